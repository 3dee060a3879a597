"""Every number in README's results table comes from a committed result file (docs/results/*.json).

A number printed with ``d`` decimals matches a JSON number that rounds to it at ``d`` decimals; a percentage
(``45 %``) matches a share (0.453) or a value already in percent, searched only in the files the row names
(:data:`ROW_SOURCES`). The JSON files must hold the command, git sha
and date that produced them (HOUSE-STYLE: "every number in README/docs from a committed result file").
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(\s?%)?")
#: every results row names the files its numbers come from (paths relative to the repo root): a number found in
#: some unrelated result file proves nothing, so rows are never checked against all of docs/results at once
ROW_SOURCES = {
    "tokenizer v1 (FSQ, 4096 codes)": ("tokenizer/pretrained/v1/card.json",),
    "tokenizer v2 (`v2`)": ("tokenizer/pretrained/v2/card.json", "docs/results/rate_distortion_v2.json",
                               "docs/results/rate_distortion_v2_1000.json"),
    "LM v2d (`v2`, 2.25 M, tokenizer v2)": ("lm/pretrained/v2/metrics.json",
                                                 "lm/pretrained/v2-conditional/metrics.json",
                                                 "docs/results/frontier.json"),
    "tokenizer v3 (`v3`, beats as words)": ("docs/results/beat_repeat.json", "docs/results/beat_v3_fidelity.json",
                                            "docs/results/beat_second_leads.json", "docs/results/beat_cinc2017.json"),
    "LM v3 (`default`, 0.97 M, tokenizer v3)": (
        "docs/results/lm_v3c.json", "docs/results/lm_v3c_mean_t1.0_texfalse.json",
        "docs/results/lm_v3c_scorecard_v3_t1.json", "docs/results/lm_v3_scorecard_v3.json",
        "docs/results/lm_v3c_adherence_g2.json", "lm/pretrained/v3/metrics.json", "docs/results/planted.json",
        "docs/results/lm_v3p_scorecard_v3_t1.json", "docs/results/lm_v3p_adherence_g2.json",
        "docs/results/lm_v3p_scorecard_v3_t1_0.3.3.json", "docs/results/lm_v3p_adherence_g3_0.3.3.json",
        "docs/results/lm_v3p_adherence_g3_label1.json", "docs/results/bench_v3_generate_idle_0.3.3.json",
        "docs/results/lm_v3p_generate_e2e_0.3.3.json", "docs/results/lm_v3_distill_bc_mean_t1.0_textrue.json",
        "docs/results/lm_v3_distill_bc_scorecard_v3_t1.json",
        "docs/results/lm_v3_distill_bc_scorecard_v3_t1_s22_41.json",
        "docs/results/lm_v3_distill_bc_adherence_g3.json", "docs/results/lm_v3_distill_bc_v_draws.json",
        "docs/results/lm_v3_distill_bc_tstr.json",
        "docs/results/lm_v3p_scorecard_v3_t1_s22_41.json"),
    "scorecard verdict, `v2`": ("docs/results/scorecard_v3.json", "docs/results/planted.json"),
    "planted defects": ("docs/results/planted.json",),
    "TSTR (beat classifier chosen on DS1 among mean-referenced N/S stages, macro-F1)": ("docs/results/tstr.json",
                                                                                       "docs/results/tstr_v3.json",
                                                                                       "docs/results/tstr_v3c.json",
                                                                                       "docs/results/tstr_v3p_0.3.3.json",
                                                                                       "docs/results/tstr_v3p_label1.json",
                                                                                       "docs/results/tstr_label1_draws.json",
                                                                                       "docs/results/lm_v3_distill_bc_tstr.json"),
    "condition adherence, LM v2": ("docs/results/adherence.json",),
}
#: rows with numbers not yet in their result files (strict xfail: the test says when they are)
UNTRACED: dict[str, str] = {}


def results_rows(text: str) -> dict[str, str]:
    """``{first cell: second cell}`` of the README table whose header is ``| what | result | page |``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.replace(" ", "") == "|what|result|page|")
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1]
    return rows


def json_numbers(paths) -> list[float]:
    out = []

    def walk(v):
        if isinstance(v, bool):
            return
        if isinstance(v, (int, float)):
            out.append(float(v))
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    for p in paths:
        walk(json.loads(Path(p).read_text()))
    return out


def traced(token: str, percent: bool, values: list[float]) -> bool:
    d = len(token.split(".")[1]) if "." in token else 0
    x = float(token)
    cands = values + ([v * 100 for v in values] if percent else [])
    return any(round(v, d) == round(x, d) for v in cands)


def test_results_files_say_how_they_were_made():
    """Each result file the checked rows read names its command, git sha and date."""
    for name in ("scorecard_v3.json", "planted.json"):
        m = json.loads((ROOT / "docs" / "results" / name).read_text())
        assert m.get("command") and m.get("git_sha") and m.get("date"), name
    for files in ROW_SOURCES.values():
        for f in files:
            assert (ROOT / f).is_file(), f"{f}: named as a results source but missing"


def _rows():
    return results_rows((ROOT / "README.md").read_text())


@pytest.mark.parametrize("row", [pytest.param(r, marks=pytest.mark.xfail(reason=UNTRACED[r], strict=True))
                                 if r in UNTRACED else r for r in _rows()])
def test_readme_results_numbers_are_in_a_result_file(row):
    rows = _rows()
    text = re.sub(r"`[^`]*`", "", rows[row])  # code spans hold names and commands, not results
    text_numbers = [m for m in NUMBER.finditer(text)]
    if not text_numbers:
        return
    assert row in ROW_SOURCES, f"README results row {row!r} has numbers but names no result file in ROW_SOURCES"
    paths = [ROOT / f for f in ROW_SOURCES[row]]
    values = json_numbers(paths)
    missing = [m.group(0) for m in text_numbers if not traced(m.group(1), bool(m.group(2)), values)]
    assert not missing, f"README row {row!r}: numbers in none of {[p.name for p in paths]}: {missing}"


def test_checked_rows_exist():
    assert set(ROW_SOURCES) <= set(_rows())
