"""What a study of 6 checkpoints sharing a frozen backbone costs against a study of 1, on the CPU.

Trains six tiny checkpoints (baseline and ersm_full, training seeds 0, 1, 2) on one
frozen timm ``resnet18`` (random weights, pretrained=False, saved once and given to
every run as ``weights``) on synthetic images, then times
:func:`ersm_eval.pipelines.study.run_study` (deletion, sparsity and occlusion, the
``compare`` defaults but three random seeds; no HTML) on the same images for one
checkpoint and for all six. The six share one backbone pass per image (and per
occluded image), so the study should cost about what one checkpoint costs. Prints
wall and CPU time (all threads of the process) of both and their ratios, and the
machine's load. What does not shrink with sharing is each checkpoint's own work
(reading it, its tails, building its occluded images, its tables), so the ratio
falls as the backbone's share of the cost grows: at 224 px (the default) the six
cost about 1.4 times one in wall time on a 2-core CPU (1.3 to 1.5 depending on the
machine), at 128 px about 1.75 times.

    .venv/bin/python benchmarks/study_speed.py
    .venv/bin/python benchmarks/study_speed.py --images 64 --image-size 128
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from ersm_core.model import ModelConfig, build_model
from ersm_core.training import TrainConfig, train
from ersm_eval.deletion import DeletionSettings
from ersm_eval.occlusion import OcclusionSettings
from ersm_eval.pipelines.study import run_study

RANKINGS = ("energy", "unary", "magnitude", "cam", "center", "border", "random")


def checkpoints(folder: Path, image_size: int, n_train: int) -> list[Path]:
    """Six checkpoints on one frozen resnet18 backbone (the same random weights for all)."""
    torch.manual_seed(0)
    weights = folder / "resnet18_backbone.pt"
    torch.save(build_model(ModelConfig(num_classes=10, backbone="resnet18", image_size=image_size)).backbone.state_dict(),
               weights)
    paths = []
    for variant in ("baseline", "ersm_full"):
        for seed in (0, 1, 2):
            config = ModelConfig(num_classes=10, backbone="resnet18", image_size=image_size, variant=variant,
                                 freeze_backbone=True)
            result = train(config, TrainConfig(dataset="synthetic", epochs=1, batch_size=32, seed=seed, device="cpu",
                                               n_train=n_train, n_test=64), weights=weights)
            path = folder / f"{variant}-s{seed}.pt"
            result.save(path)
            paths.append(path)
    return paths


def timed(paths: list[Path], folder: Path, images: int, name: str) -> tuple[float, float, dict]:
    wall, cpu = time.perf_counter(), time.process_time()
    run = run_study(paths, "synthetic", DeletionSettings(rankings=RANKINGS, seeds=(0, 1, 2)), OcclusionSettings(
        patterns=("random_squares", "object", "background"), severities=(0.2, 0.4, 0.6)), out=folder / name,
        limit=images, device="cpu", batch_size=32)
    return time.perf_counter() - wall, time.process_time() - cpu, {"bundles": run.bundles}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="test images evaluated")
    parser.add_argument("--image-size", type=int, default=224, help="resnet18's own input size")
    parser.add_argument("--n-train", type=int, default=64, help="training images of each tiny checkpoint")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = checkpoints(folder, args.image_size, args.n_train)
        timed(paths[:1], folder, 4, "warm-up")
        one_wall, one_cpu, _ = timed(paths[:1], folder, args.images, "one")
        six_wall, six_cpu, info = timed(paths, folder, args.images, "six")
    print(f"resnet18 (frozen, random weights) at {args.image_size} px, {args.images} synthetic images, "
          f"{args.threads} torch thread(s)")
    print(f"backbone bundles of the 6-checkpoint study: {info['bundles']}")
    print(f"1 checkpoint : wall {one_wall:7.2f} s   cpu {one_cpu:7.2f} s")
    print(f"6 checkpoints: wall {six_wall:7.2f} s   cpu {six_cpu:7.2f} s")
    print(f"ratio 6 / 1  : wall {six_wall / one_wall:5.2f}x   cpu {six_cpu / one_cpu:5.2f}x")
    print(f"load average (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in os.getloadavg())}; cpus: {os.cpu_count()}")


if __name__ == "__main__":
    main()
