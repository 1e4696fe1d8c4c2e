"""The README's Python API example runs as written, and says what the report then shows."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import torch

from ersm_eval.verdicts import DELETION_VERDICTS, chance_test

ROOT = Path(__file__).resolve().parents[1]


def _api_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    code = _api_example()
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    summary = namespace["result"].tables["deletion_summary.csv"]
    rows = summary.set_index("ranking")
    assert "gradcam" in rows.index and "random" in rows.index
    # every ranking but random carries a verdict from the rule's vocabulary
    others = rows.drop(index="random")
    assert set(others["verdict"]) <= set(DELETION_VERDICTS)
    # the verdicts follow the chance test of the k = 0 accuracy (an untrained ResNet on noise)
    acc0 = float(rows.loc["gradcam", "acc_k0"])
    test = chance_test(round(acc0 * 8), 8, 10)
    if test.at_chance:
        assert set(others["verdict"]) == {"not_testable"}
    else:
        assert "not_testable" not in set(others["verdict"])
    saved = pd.read_csv(tmp_path / "runs" / "resnet18-deletion" / "deletion_summary.csv")
    assert list(saved["ranking"]) == list(summary["ranking"])
    assert "verdict" in capsys.readouterr().out
