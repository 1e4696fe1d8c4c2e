"""What the feature cache saves when training on a frozen backbone, on the CPU.

Trains the same model twice on synthetic images with a frozen backbone, in one run:
one epoch with ``feature_cache=False`` (the backbone runs on every image) and
``--epochs`` epochs (default 20, the paper's schedule) with the cache (the backbone
runs once per image, then the spatial module and head train from the stored
features). Both include the validation share and the one test pass. Prints wall
and CPU seconds of each and the ratio  cached run ÷ one uncached epoch  (the goal
is ≤ 1.5 for 20 epochs). With ``--check`` (default) it also trains one cached
epoch and checks that its history equals the uncached epoch's.

    .venv/bin/python benchmarks/train_cache_speed.py
    .venv/bin/python benchmarks/train_cache_speed.py --backbone compact_cnn --image-size 128 --images 512

The default backbone, ``tf_efficientnet_lite0`` at its pretrained input size
(224 px), is built with ``pretrained=False``: nothing is downloaded, and the
speed does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from ersm_core.data.transforms import resolve_data_config
from ersm_core.model import ModelConfig
from ersm_core.training import HISTORY_COLUMNS, TrainConfig, train


def timed(model_config: ModelConfig, train_config: TrainConfig):
    wall, cpu = time.perf_counter(), time.process_time()
    result = train(model_config, train_config)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=None, help="default: the backbone's own")
    parser.add_argument("--variant", default="ersm_full")
    parser.add_argument("--images", type=int, default=160, help="training-split images (10%% become validation)")
    parser.add_argument("--test-images", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-check", action="store_true", help="skip the one-epoch history comparison")
    args = parser.parse_args()

    data = resolve_data_config(args.backbone, args.image_size)
    model_config = ModelConfig(
        num_classes=10, backbone=args.backbone, variant=args.variant, image_size=data.image_size, freeze_backbone=True,
        mean=data.mean, std=data.std, crop_pct=data.crop_pct, interpolation=data.interpolation,
    )
    common = dict(dataset="synthetic", n_train=args.images, n_test=args.test_images, batch_size=args.batch_size,
                  device="cpu", augment=False)

    uncached, u_wall, u_cpu = timed(model_config, TrainConfig(epochs=1, feature_cache=False, **common))
    cached, c_wall, c_cpu = timed(model_config, TrainConfig(epochs=args.epochs, feature_cache=True, **common))
    cache = cached.provenance["feature_cache"]

    print(f"{args.backbone} @ {data.image_size}px, frozen, {args.variant}, {uncached.provenance['train_size']} train + "
          f"{uncached.provenance['val_size']} validation + {args.test_images} test synthetic images, "
          f"{torch.get_num_threads()} threads")
    print(f"  uncached, 1 epoch:            {u_wall:8.2f} s wall  {u_cpu:8.2f} s CPU")
    print(f"  cached, {args.epochs:2d} epochs:            {c_wall:8.2f} s wall  {c_cpu:8.2f} s CPU   "
          f"(of which {cache['seconds']:.2f} s computing {cache['bytes'] / 2**20:.1f} MiB of features once)")
    ratio = c_wall / u_wall
    print(f"  {args.epochs} cached epochs / 1 uncached epoch: {ratio:.2f} (wall), {c_cpu / u_cpu:.2f} (CPU)"
          f"   goal <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'}")

    if not args.no_check:
        one, _, _ = timed(model_config, TrainConfig(epochs=1, feature_cache=True, **common))
        columns = [c for c in HISTORY_COLUMNS if c != "seconds"]
        pd.testing.assert_frame_equal(uncached.history[columns], one.history[columns], check_exact=False, rtol=1e-4, atol=1e-6)
        print("  one cached epoch has the uncached epoch's history (rtol 1e-4): yes")


if __name__ == "__main__":
    main()
