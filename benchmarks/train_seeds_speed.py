"""What ``train --seeds`` saves on a frozen backbone: three seeds from one backbone pass, on the CPU.

Runs the command twice, in one run of this script, each in its own process:
``ersm-eval train --seeds 0`` and ``ersm-eval train --seeds 0,1,2``, with a frozen
timm ``resnet18`` (``pretrained=False``: nothing is downloaded) on synthetic images,
and prints the wall and CPU seconds of each and the ratio  three seeds ÷ one  (the
goal is ≤ 1.5). Each run also scores its test images once per model, through the
whole network; that pass is not shared.

A frozen backbone is shared by the seeds: pretrained, loaded with ``--weights``, or
built with ``pretrained=False`` (then drawn from one fixed seed, whatever the training
seed). By default this script writes one such backbone's weights to a file first and
passes it with ``--weights`` (standing in for pretrained weights, offline);
``--random-backbone`` leaves it out and trains on the fixed-seed random backbone.

    .venv/bin/python benchmarks/train_seeds_speed.py
    .venv/bin/python benchmarks/train_seeds_speed.py --images 200 --epochs 3 --image-size 96
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], threads: int) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``ersm-eval train`` process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cli.main", "train", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"ersm-eval train failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--variant", default="ersm_full")
    parser.add_argument("--images", type=int, default=400, help="training-split images (10%% become validation)")
    parser.add_argument("--test-images", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each run")
    parser.add_argument("--random-backbone", action="store_true", help="no --weights: the frozen random backbone drawn from the fixed seed")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ersm-seeds-") as tmp:
        common = ["--dataset", "synthetic", "--backbone", args.backbone, "--image-size", str(args.image_size),
                  "--variant", args.variant, "--n-train", str(args.images), "--n-test", str(args.test_images),
                  "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--device", "cpu",
                  "--freeze-backbone", "--no-augment", "--quiet"]
        if not args.random_backbone:
            import timm
            import torch

            weights = Path(tmp) / "backbone.pt"
            torch.manual_seed(0)
            torch.save(timm.create_model(args.backbone, pretrained=False).state_dict(), weights)
            common += ["--weights", str(weights)]
        load = os.getloadavg()
        one_wall, one_cpu = run([*common, "--seeds", "0", "--out", str(Path(tmp) / "one")], args.threads)
        three_wall, three_cpu = run([*common, "--seeds", "0,1,2", "--out", str(Path(tmp) / "three")], args.threads)
        models = sorted(p.name for p in (Path(tmp) / "three").glob("*.pt"))

    backbone = "the fixed-seed random backbone for all seeds" if args.random_backbone else "one backbone (--weights) for all seeds"
    print(f"{args.backbone} @ {args.image_size}px, frozen, {args.variant}, {args.images} training-split + "
          f"{args.test_images} test synthetic images, {args.epochs} epochs, {args.threads} thread(s), {backbone}; "
          f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    print(f"  --seeds 0:      {one_wall:8.2f} s wall  {one_cpu:8.2f} s CPU")
    print(f"  --seeds 0,1,2:  {three_wall:8.2f} s wall  {three_cpu:8.2f} s CPU   ({', '.join(models)})")
    ratio = three_wall / one_wall
    print(f"  three seeds / one seed: {ratio:.2f} (wall), {three_cpu / one_cpu:.2f} (CPU)"
          f"   goal <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'}")
    print(f"  load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
