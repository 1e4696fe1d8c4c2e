"""The shape of the reports package: no verdict spelled outside ersm_eval.verdicts, small files,
and no torch on the report's path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ersm_eval import verdicts

_REPORTS = Path(__file__).resolve().parents[2] / "reports"
_SOURCES = sorted([*_REPORTS.rglob("*.py"), *_REPORTS.rglob("*.j2")])


def _verdict_words() -> list[str]:
    """Every verdict code and display word of ersm_eval.verdicts, and the phrases of its sentences.

    "baseline" is left out: it is also the name of a model variant and of the trivial maps.
    """
    words = {w for w in verdicts.verdict_names() if w != "baseline"}
    words |= {w.replace("_", " ") for w in words}
    words |= {verdicts.AT_CHANCE, verdicts.NOT_MEASURED, "above chance", "below chance", "localizes the object",
              "cannot be told apart", "follows position", "excludes zero", "includes zero"}
    return sorted(words)


def test_the_word_list_is_the_verdict_modules():
    words = _verdict_words()
    for code in (*verdicts.DELETION_VERDICTS, "localizes", "does_not_localize"):
        assert code in words
    assert "supports" in words and "not testable (model at chance)" in words and "above random" not in words


def _hits(text: str) -> list[str]:
    found = []
    for word in _verdict_words():
        # a whole word: "above_random" is not found inside the column name "steps_above_random"
        if re.search(rf"(?<![A-Za-z_]){re.escape(word)}(?![A-Za-z_])", text, flags=re.IGNORECASE):
            found.append(word)
    return found


def test_the_scan_finds_what_it_looks_for():
    assert _hits('label = "contradicts"') == ["contradicts"]
    assert _hits("if verdict == 'not_testable':") == ["not_testable"]
    assert "at chance" in _hits("# the model is At chance")
    assert _hits("row['steps_above_random']") == []


@pytest.mark.parametrize("path", _SOURCES, ids=lambda p: str(p.relative_to(_REPORTS)))
def test_no_verdict_word_in_reports(path):
    hits = _hits(path.read_text(encoding="utf-8"))
    assert not hits, f"{path.name} spells {hits}; take the words from ersm_eval.verdicts"


@pytest.mark.parametrize("path", [p for p in _SOURCES if p.suffix == ".py"], ids=lambda p: str(p.relative_to(_REPORTS)))
def test_no_file_over_450_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 450
