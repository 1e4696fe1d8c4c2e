"""How much a whole deletion evaluation costs next to plain inference, on the CPU.

For each model (compact_cnn at 128 px and resnet50 at 256 px, random init, both
with an 8×8 map, N = 64, ERSM-Full, 200 classes as for CUB) it measures, in one
process, on the same random images:

- plain inference: ``model(x)`` over the images;
- ours: :class:`ersm_eval.deletion.DeletionEvaluator` with the default settings
  (energy, unary, magnitude, cam and center in both orders, random with 5 seeds:
  15 curves, every k) — one backbone pass per image, then prefix sums and one
  batched head call; and, for the ratio, a one-ranking run (energy alone, both
  orders: 2 curves) on the same images;
- the per-step protocol (what the authors' code does): for every ranking and k,
  the full model re-runs on the batch with the first k tokens of the feature map
  zeroed, GAP rescaled, then the head; 15 × 64 = 960 backbone passes per batch.
  Every pass costs the same, so only some (spread over rankings and k) are timed,
  on one batch, and the total is extrapolated (the output says how many); the
  timed passes are checked against ours.

Timings are medians over ``--repeats``, with torch's default thread count unless
``--threads`` is given. Usage::

    .venv/bin/python benchmarks/deletion_speed.py
    .venv/bin/python benchmarks/deletion_speed.py --models compact_cnn --images 64 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from ersm_core.energy import untokenize_scale
from ersm_core.model import ModelConfig, build_model
from ersm_eval.deletion import DeletionEvaluator, DeletionSettings

SETUPS = {"compact_cnn": 128, "resnet50": 256}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@torch.no_grad()
def plain_inference(model, images, batch_size):
    for start in range(0, len(images), batch_size):
        model(images[start : start + batch_size])


def ours(model, images, labels, batch_size, compute=True, settings=None):
    evaluator = DeletionEvaluator(model, settings or DeletionSettings())
    for start in range(0, len(images), batch_size):
        sl = slice(start, start + batch_size)
        evaluator.update({"image": images[sl], "label": labels[sl], "index": torch.arange(len(images))[sl]})
    if compute:
        evaluator.compute()
    return evaluator


@torch.no_grad()
def per_step_pass(model, images, order, k):
    """One step of the per-step protocol: the full model with the first k tokens of ``order`` deleted."""
    feats = model.forward_features(images)
    n = model.n_tokens
    keep = torch.ones(len(images), n)
    keep.scatter_(1, order[:, :k], 0.0)
    pooled = model.pool(untokenize_scale(feats, keep, model.config.patch_size)) * (n / (n - k))
    return model.forward_head(pooled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="compact_cnn,resnet50")
    parser.add_argument("--images", type=int, default=0, help="images per measurement (default 64 compact_cnn, 32 resnet50)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-step-images", type=int, default=0,
                        help="batch of the per-step protocol (default: --batch-size, as plain inference)")
    parser.add_argument("--per-step-passes", type=int, default=0,
                        help="passes of the per-step protocol actually timed (default: 48 for compact_cnn, 6 for resnet50)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--num-classes", type=int, default=200)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, median of {args.repeats} repeats")

    for name in args.models.split(","):
        size = SETUPS[name]
        torch.manual_seed(0)
        model = build_model(ModelConfig(num_classes=args.num_classes, backbone=name, image_size=size, variant="ersm_full")).eval()
        n_images = args.images or (64 if name == "compact_cnn" else 32)
        images = torch.randn(n_images, 3, size, size)
        labels = torch.randint(0, args.num_classes, (n_images,))
        settings = DeletionSettings()
        n_curves = len(DeletionEvaluator(model, settings).curves)
        one = DeletionSettings(rankings=("energy",))
        n_tokens = model.n_tokens

        # warm-up, then interleave plain and ours so drifts in machine load hit both
        plain_inference(model, images[: args.batch_size], args.batch_size)
        ours(model, images[: args.batch_size], labels[: args.batch_size], args.batch_size, compute=False)
        t_plain, t_ours, t_ours_all, t_one = [], [], [], []
        for _ in range(args.repeats):
            t_plain.append(_timed(lambda: plain_inference(model, images, args.batch_size)))
            t_ours.append(_timed(lambda: ours(model, images, labels, args.batch_size, compute=False)))
            t_one.append(_timed(lambda: ours(model, images, labels, args.batch_size, False, one)))
            t_ours_all.append(_timed(lambda: ours(model, images, labels, args.batch_size, compute=True)))
        plain_s = statistics.median(t_plain)
        ours_s = statistics.median(t_ours)
        ours_all_s = statistics.median(t_ours_all)
        one_s = statistics.median(t_one)

        # the per-step protocol on a small batch, extrapolated per image
        b = min(args.per_step_images or args.batch_size, n_images)
        reference = ours(model, images[:b], labels[:b], b, compute=False).records()
        orders = torch.from_numpy(reference["orders"].astype(np.int64))  # [b, curves, N]
        jobs = [(c, k) for c in range(n_curves) for k in range(n_tokens)]
        budget = args.per_step_passes or (48 if name == "compact_cnn" else 6)
        timed_jobs = [jobs[i] for i in np.linspace(0, len(jobs) - 1, min(budget, len(jobs))).round().astype(int)]
        per_step_pass(model, images[:b], orders[:, 0], 0)  # warm-up
        mismatches = 0
        start = time.perf_counter()
        for c, k in timed_jobs:
            logits = per_step_pass(model, images[:b], orders[:, c], k)
            correct = (logits.argmax(1) == labels[:b]).numpy()
            mismatches += int((correct != reference["correct"][:, c, k]).sum())
        per_pass = (time.perf_counter() - start) / len(timed_jobs)
        per_step_total = per_pass * len(jobs) / b * n_images  # all passes, scaled to n_images

        print(f"\n{name} at {size}px: N = {n_tokens} tokens, {n_curves} curves (5 random seeds) x {n_tokens} k, "
              f"{args.num_classes} classes, {n_images} images, batch {args.batch_size}")
        print(f"  plain inference               {plain_s:8.3f} s  ({1e3 * plain_s / n_images:7.2f} ms/image)")
        print(f"  ours (update)                 {ours_s:8.3f} s  ({1e3 * ours_s / n_images:7.2f} ms/image)  "
              f"= {ours_s / plain_s:.2f}x plain")
        print(f"  ours (update + compute)       {ours_all_s:8.3f} s  = {ours_all_s / plain_s:.2f}x plain")
        print(f"  ours, one ranking (update)    {one_s:8.3f} s  (energy, both orders); default / one ranking = "
              f"{ours_s / one_s:.2f}x")
        print(f"  per-step protocol             {per_step_total:8.1f} s  ({1e3 * per_step_total / n_images:7.1f} ms/image)  "
              f"= {per_step_total / ours_s:.0f}x ours")
        print(f"    ({len(timed_jobs)} of {len(jobs)} passes on {b} images timed, {1e3 * per_pass:.1f} ms each, "
              f"extrapolated to {len(jobs)} passes and {n_images} images; "
              f"{'correctness identical to ours' if not mismatches else f'{mismatches} correctness bits differ from ours'})")
        ok_ours = ours_s / plain_s <= 1.3
        ok_step = per_step_total / ours_s >= 50
        print(f"  targets: ours <= 1.3x plain: {'met' if ok_ours else 'NOT met'}; "
              f"per-step >= 50x ours: {'met' if ok_step else 'NOT met'}")


if __name__ == "__main__":
    main()
