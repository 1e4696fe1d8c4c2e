"""Occlusion and deletion results are bitwise identical for every batch size, 1 included."""

from __future__ import annotations

import pytest

from ersm_core.data.synthetic import CLASS_NAMES
from tests.safety.inputs import run_cli, two_class_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return two_class_checkpoint(tmp_path_factory.mktemp("bs") / "m.pt", names=CLASS_NAMES[:2])


def test_occlusion_csvs_are_byte_identical_for_batch_sizes_1_3_8(tmp_path, ckpt, one_thread):
    outs = []
    for batch_size in (1, 3, 8):
        out = tmp_path / f"bs{batch_size}"
        r = run_cli("occlusion", ckpt, "--dataset", "synthetic", "--limit", "7", "--batch-size", batch_size,
                    "--fills", "gray,blur,noise", "--patterns", "random_squares,center,object", "--severities", "0.3,0.6",
                    "--out", out, "--no-report", "--quiet")
        assert r.exit_code == 0, r.output
        outs.append(out)
    for name in ("occlusion.csv", "occlusion_summary.csv"):
        first = (outs[0] / name).read_bytes()
        assert all((o / name).read_bytes() == first for o in outs[1:]), name
    # the tables hold probabilities at full precision, so equal bytes mean equal floats
    assert b"0." in (outs[0] / "occlusion.csv").read_bytes()


@pytest.mark.parametrize("level", ["feature", "input"])
def test_deletion_csvs_are_byte_identical_for_batch_sizes_1_3_8(tmp_path, ckpt, level):
    """Deletion runs every model call on fixed-size chunks too (with the machine's usual thread count)."""
    outs = []
    for batch_size in (1, 3, 8):
        out = tmp_path / f"bs{batch_size}"
        r = run_cli("deletion", ckpt, "--dataset", "synthetic", "--limit", "7", "--batch-size", batch_size,
                    "--level", level, "--steps", "4", "--seeds", "0,1", "--out", out, "--no-report", "--quiet")
        assert r.exit_code == 0, r.output
        outs.append(out)
    names = sorted(p.name for p in outs[0].glob("*.csv"))
    assert {"deletion_curves.csv", "deletion_summary.csv", "energy_diagnostics.csv"} <= set(names)
    for name in names:
        first = (outs[0] / name).read_bytes()
        assert all((o / name).read_bytes() == first for o in outs[1:]), name
