"""``ersm-eval compare``: deletion, occlusion and sparsity for several checkpoints on the same
images, one comparative report and a paper-style table.

The command runs the three evaluation commands in turn into sub-folders of a
temporary folder that becomes ``--out`` only when everything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from cli.app import app
from cli.common import (
    BatchSize, Checkpoints, DataRoot, DatasetName, Device, Limit, Out, Overwrite, Quiet, Seeds, Split, SplitOpt,
    Workers, console, handle_errors,
)
from ersm_core.errors import ConfigError

__all__ = ["compare", "run_comparison", "compare_into"]


def _labels(checkpoints: list[Path]) -> list[str]:
    stems = [Path(c).stem for c in checkpoints]
    if len(set(stems)) < len(stems):
        raise ConfigError(f"checkpoints must have distinct file names to be told apart in the tables, got {stems}")
    return stems


def compare_into(
    tmp: Path,
    checkpoints: list[Path],
    dataset: str,
    data_root: Optional[Path] = None,
    split: Split = Split.test,
    seeds: str = "0,1,2,3,4",
    occlusion_seeds: str = "0",
    batch_size: int = 32,
    workers: int = 0,
    device: str = "auto",
    limit: Optional[int] = None,
    quiet: bool = False,
    deletion_steps: str = "all",
    occlusion_fills: str = "gray",
    occlusion_severities: str = "0,0.1,0.2,0.3,0.4,0.5,0.6",
    claims_for: Optional[dict[str, Any]] = None,
    title: Optional[str] = None,
) -> Path:
    """Run the three evaluations and write the comparative report into the folder ``tmp``.

    ``tmp`` is the temporary folder of an :func:`~ersm_eval.output.output_folder`;
    :func:`run_comparison` is the atomic wrapper. ``claims_for`` = {"baseline": label, "ersm": label, "init_keep": float, "spurious": float}
    adds the paper's claims section (see :mod:`ersm_eval.claims`).
    """
    from cli.deletion import deletion
    from cli.occlusion import occlusion
    from cli.sparsity import sparsity
    from ersm_eval.claims import evaluate_claims
    from reports import build_report, load_run, paper_table, write_paper_table
    from reports.combine import combine_by_checkpoint

    labels = _labels(checkpoints)
    common = dict(dataset=dataset, data_root=data_root, split=split, batch_size=batch_size, workers=workers,
                  device=device, limit=limit, no_report=True, quiet=quiet)
    folders = []
    for ckpt, label in zip(checkpoints, labels):
        folder = tmp / f"deletion-{label}"
        deletion(ckpt, out=folder, label=label, seeds=seeds, steps=deletion_steps, **common)
        folders.append(folder)
    folder = tmp / "occlusion"
    occlusion(list(checkpoints), out=folder, label=labels, seeds=occlusion_seeds, fills=occlusion_fills,
              severities=occlusion_severities, **common)
    folders.append(folder)
    for ckpt, label in zip(checkpoints, labels):
        folder = tmp / f"sparsity-{label}"
        sparsity(ckpt, out=folder, label=label, **common)
        folders.append(folder)

    runs = combine_by_checkpoint([load_run(f) for f in folders])
    claims = None
    if claims_for:
        by_label = {r.label: r.tables for r in runs}
        occ = by_label.get(claims_for["ersm"], {}).get("occlusion_summary.csv")
        claims = evaluate_claims(
            by_label[claims_for["baseline"]], by_label[claims_for["ersm"]], occ,
            baseline_label=claims_for["baseline"], ersm_label=claims_for["ersm"],
            init_keep=float(claims_for.get("init_keep", 0.9)), spurious=float(claims_for.get("spurious", 0.0)),
        )
    # CSV links are relative to report.html, so they stay valid when tmp becomes out
    build_report(runs, tmp / "report.html", figures_dir=tmp / "figures", claims=claims,
                 title=title or f"ERSM comparison on {dataset}: {', '.join(labels)}")
    write_paper_table(paper_table(runs), tmp)
    return tmp / "report.html"


def run_comparison(checkpoints: list[Path], dataset: str, out: Path, overwrite: bool = False, **options: Any) -> Path:
    """:func:`compare_into` a temporary folder that becomes ``out`` once complete; returns the report path."""
    from ersm_eval.output import check_output_dir, output_folder

    for ckpt in checkpoints:
        if not Path(ckpt).is_file():
            raise ConfigError(f"checkpoint not found: {ckpt}")
    _labels(checkpoints)
    check_output_dir(out, overwrite, inputs=[*checkpoints, options.get("data_root")])
    with output_folder(out, overwrite) as tmp:
        compare_into(tmp, checkpoints, dataset, **options)
    return out / "report.html"


@app.command()
@handle_errors
def compare(
    checkpoints: Checkpoints,
    dataset: DatasetName,
    out: Out = Path("runs/compare"),
    data_root: DataRoot = None,
    split: SplitOpt = Split.test,
    seeds: Seeds = "0,1,2,3,4",
    batch_size: BatchSize = 32,
    workers: Workers = 0,
    device: Device = "auto",
    limit: Limit = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Deletion, occlusion and sparsity for every checkpoint on the same images, with one comparative report."""
    path = run_comparison(checkpoints, dataset, out, overwrite, data_root=data_root, split=split, seeds=seeds,
                          batch_size=batch_size, workers=workers, device=device, limit=limit, quiet=quiet)
    console.print(f"Report: {path}", highlight=False)
