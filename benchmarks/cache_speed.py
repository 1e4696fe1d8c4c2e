"""What ``--cache`` saves on a second feature-level evaluation of the same checkpoint, on the CPU.

Runs the deletion evaluation (default settings: 9 curves, every k) over synthetic
test images twice through :func:`ersm_eval.features.feature_batches` with a fresh
feature cache: the first run computes and stores the backbone features, the
second reads them back (no image decoding, no backbone). Also times the same
evaluation without a cache. Prints medians over ``--repeats`` and the ratios.

    .venv/bin/python benchmarks/cache_speed.py
    .venv/bin/python benchmarks/cache_speed.py --backbone resnet50 --image-size 256 --images 64
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict

import torch

from ersm_core.data import build_dataset, model_transform
from ersm_core.model import ModelConfig, build_model
from ersm_eval.cache import FeatureCache, cache_key
from ersm_eval.deletion import DeletionEvaluator, DeletionSettings
from ersm_eval.features import feature_batches


def evaluate(model, dataset, indices, batch_size, cache):
    evaluator = DeletionEvaluator(model, DeletionSettings())
    for batch in feature_batches(model, dataset, indices, batch_size, 0, "cpu", cache):
        evaluator.update(batch)
    return evaluator.compute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="compact_cnn")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=10, backbone=args.backbone, image_size=args.image_size)).eval()
    dataset = build_dataset("synthetic", "test", model_transform(model), n_test=args.images)
    indices = list(range(args.images))
    key = cache_key("benchmark-" + args.backbone, "synthetic", "test", asdict(dataset.transform), {"n_test": args.images})

    plain, first, second = [], [], []
    for _ in range(args.repeats):
        root = tempfile.mkdtemp(prefix="ersm-cache-bench-")
        try:
            t = time.perf_counter(); ref = evaluate(model, dataset, indices, args.batch_size, None); plain.append(time.perf_counter() - t)
            t = time.perf_counter(); evaluate(model, dataset, indices, args.batch_size, FeatureCache(root, key)); first.append(time.perf_counter() - t)
            cache = FeatureCache(root, key)
            t = time.perf_counter(); got = evaluate(model, dataset, indices, args.batch_size, cache); second.append(time.perf_counter() - t)
            assert cache.hits > 0 and cache.misses == 0, "the second run must be served from the cache"
            for name in ref:
                assert ref[name].equals(got[name]), f"cached run differs from the uncached one in {name}"
        finally:
            shutil.rmtree(root, ignore_errors=True)
    med = statistics.median
    print(f"{args.backbone} @ {args.image_size}px, {args.images} synthetic images, deletion with default rankings, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"  no cache:            {med(plain):7.2f} s")
    print(f"  first run (store):   {med(first):7.2f} s   ({med(first) / med(plain):.2f}x no cache)")
    print(f"  second run (cached): {med(second):7.2f} s   ({med(plain) / med(second):.1f}x faster than no cache)")


if __name__ == "__main__":
    main()
