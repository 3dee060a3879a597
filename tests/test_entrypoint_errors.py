"""Every entry point fails with a non-zero exit and one ``error:`` line on a bad flag or a bad input, with a
traceback only under ``--debug`` (issue 6).

Bad flags run as real subprocesses (argparse runs before any heavy import); bad inputs call each entry
point's ``main(argv)`` in this process, which is what ``python <file>`` runs, to keep the test fast.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from conftest import REPO

ENTRY_POINTS = ["tokenizer/train.py", "tokenizer/tokenize_db.py", "lm/train.py", "lm/generate.py", "lm/forecast.py",
                "eval/score.py", "eval/train_embedding.py", *sorted(f"scripts/{p.name}" for p in
                                                                  (REPO / "scripts").glob("*.py"))]


def _messages(err: str) -> list[str]:
    chunks = [c for ln in err.split("\n") for c in ln.split("\r")]
    return [c for c in chunks if c.strip() and "%|" not in c]  # tqdm progress bars are not messages


def _assert_one_line(rc: int, err: str, *needles: str) -> None:
    assert rc not in (0, None) and "Traceback" not in err, err
    lines = _messages(err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_every_entry_point_is_listed():
    assert len(ENTRY_POINTS) >= 12 and "scripts/demo.py" in ENTRY_POINTS and "scripts/bench.py" in ENTRY_POINTS


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_bad_flag_is_one_line(script):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, script, "--no_such_flag", "1"], cwd=REPO, capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 2, r.stderr
    _assert_one_line(r.returncode, r.stderr, "--help")
    msg = _messages(r.stderr)[0]
    assert "unrecognized arguments: --no_such_flag" in msg or "arguments are required" in msg, msg


def _main(script: str):
    name = "_ep_" + script.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, REPO / script)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # as `import` does: dataclasses and type hints look the module up there
    spec.loader.exec_module(mod)
    return mod.main


def _bad_inputs(tmp):
    nowhere = str(tmp / "nowhere")
    cfg = tmp / "broken.yaml"
    cfg.write_text("epochs: [1, 2\n")
    return {
        "tokenizer/train.py": (["--config", str(cfg)], "broken.yaml"),
        "tokenizer/tokenize_db.py": (["--tokenizer", nowhere, "--out", str(tmp / "o")], "nowhere"),
        "lm/train.py": (["--tokenizer", nowhere, "--output_dir", str(tmp / "o"), "--store", str(tmp / "s")],
                        "nowhere"),
        "lm/generate.py": (["--model", nowhere, "--out", str(tmp / "o")], "nowhere"),
        "lm/forecast.py": (["--model", nowhere, "--out", str(tmp / "o")], "nowhere"),
        "eval/score.py": (["--synthetic", nowhere, "--out", str(tmp / "o")], "nowhere"),
        "eval/train_embedding.py": (["--config", str(cfg)], "broken.yaml"),
        "scripts/bigram_samples.py": (["--store", nowhere, "--out", str(tmp / "o")], "nowhere"),
        "scripts/bench.py": (["--model", nowhere, "--stages", "generate", "--out", str(tmp / "o")], "nowhere"),
        "scripts/rate_distortion.py": (["--out", str(tmp / "o"), "--ns", "ten"], "ten"),
        "scripts/reproduce_seed.py": (["--out", str(tmp / "o"), "--block_sizes", "ten"], "ten"),
        "scripts/demo.py": (["--data_dir", nowhere, "--out", str(tmp / "o"), "--no_download"], None),
        "scripts/tstr.py": (["--model", nowhere, "--out", str(tmp / "o")], "nowhere"),
        "scripts/tstr_beat_timing.py": (["--sets", f"beat:V={nowhere}", "--out", str(tmp / "t.json")], "nowhere"),
        "scripts/lm_v3_strips.py": (["--model", nowhere, "--out", str(tmp / "s.png")], "nowhere"),
        "scripts/fit_texture.py": (["--tokenizer", nowhere, "--out", str(tmp / "o")], "nowhere"),
        "scripts/tokenizer_report.py": (["--tokenizer", nowhere, "--out", str(tmp / "o")], "nowhere"),
        "scripts/planted.py": (["--defects", "nosuch", "--out", str(tmp / "o")], "nosuch"),
        "scripts/adherence.py": (["--sets", f"rhythm:N={nowhere}", "--out", str(tmp / "o")], "nowhere"),
        "scripts/beat_cv.py": (["--data_dir", nowhere, "--download", "false", "--out", str(tmp / "o")], "nowhere"),
        "scripts/lm_ablate.py": (["--runs", "nowhere", "--out", str(tmp / "o")], "nowhere"),
        "scripts/fit_wander.py": (["--tokenizer", nowhere], "nowhere"),
        "scripts/fit_beat_cache.py": (["--model", nowhere, "--out", str(tmp / "o.json")], "nowhere"),
        "scripts/wander_check.py": (["--tokenizer", nowhere], "nowhere"),
        "scripts/lead_check.py": (["--synthetic", nowhere], "nowhere"),
        "scripts/verbatim_check.py": (["--synthetic", nowhere], "nowhere"),
        "scripts/scorecard_frontier.py": (["--sets", f"x={nowhere}"], "nowhere"),
        "scripts/training_data.py": (["--models", "nosuch"], "nosuch"),
        "scripts/texture_cv.py": (["--tokenizer", nowhere], "nowhere"),
        "scripts/baseline_study.py": (["--variants", "3:spline"], "3:spline"),
        "scripts/augment_views.py": (["--angles", "120", "--out", str(tmp / "o.png")], "120"),
        "scripts/beat_repeat.py": (["--tokenizer", nowhere], "nowhere"),
        "scripts/beat_fidelity.py": (["--tokenizer", nowhere], "nowhere"),
        "scripts/beat_study.py": (["--tokenizer", nowhere], "nowhere"),
        "scripts/beat_texture.py": (["--tokenizer", nowhere], "nowhere"),
        "scripts/beat_leads.py": (["--tokenizer", nowhere], "nowhere"),
        "scripts/beat_cinc.py": (["--ds2", nowhere], "nowhere"),
        "scripts/eval_lm_v3.py": (["--model", nowhere, "--out", str(tmp / "o.json")], "nowhere"),
        "scripts/v3_sampler_hashes.py": (["--compare", f"{nowhere},{nowhere}"], "nowhere"),
        "scripts/beat_study_grid.py": (["--tokenizer", nowhere, "--out", str(tmp / "g.json")], "nowhere"),
        "scripts/detail_study.py": (["--store", nowhere, "--out", str(tmp / "o.json")], "nowhere"),
        "scripts/fit_texture_prior.py": (["--tokenizer", "v3", "--out", str(tmp / "o"), "--records", "100"], "100"),
        "scripts/texture_prior_check.py": (["--sets", nowhere, "--out", str(tmp / "o.json")], "nowhere"),
        "scripts/kv_layout_micro.py": (["--out", str(tmp / "o.json"), "--rows", "0"], "--rows 0"),
        "scripts/texture_ab_speed.py": (["--old_rev", "nosuchrev0", "--out", str(tmp / "o.json")], "nosuchrev0"),
        "scripts/v3_speed_ab.py": (["--out", str(tmp / "o.json"), "--model", nowhere], "nowhere"),
        "scripts/v_beat_check.py": (["--sets", f"beat:V={nowhere}", "--out", str(tmp / "o.json")], "nowhere"),
        "scripts/rhythm_support.py": (["--rhythms", "VTX", "--out", str(tmp / "o.json")], "VTX"),
        "scripts/filter_teacher.py": (["--src", nowhere, "--out", str(tmp / "o")], "nowhere"),
    }


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_bad_input_is_one_line(script, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ECG2LLM_DATA", str(tmp_path / "no_data"))  # never the real database, never a download
    cases = _bad_inputs(tmp_path)
    if script not in cases:
        pytest.fail(f"add a bad-input case for the new entry point {script}")
    argv, needle = cases[script]
    if needle is None:
        pytest.skip(f"{script}: no bad-input case runs fast (bad flags are covered above)")
    rc = _main(script)(argv)
    _assert_one_line(rc, capsys.readouterr().err, needle)


def test_debug_shows_the_traceback(tmp_path):
    r = subprocess.run([sys.executable, "lm/generate.py", "--model", str(tmp_path / "nowhere"), "--debug"],
                       cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert r.returncode != 0 and "Traceback" in r.stderr
