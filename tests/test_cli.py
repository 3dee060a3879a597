"""The ``ecg2llm`` console command and the Python quick start, run as a user would (outside the checkout)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ecg2llm import cli
from ecg2llm.lm.model import PRETRAINED_DIR

REPO = Path(__file__).resolve().parents[1]


def _user_env() -> dict:
    """A user's shell: no PYTHONPATH (the package must be installed), no network, one thread."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="disabled")
    return env


def test_help_lists_every_subcommand_with_its_docstring(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("tokenize", "train-tokenizer", "train", "generate", "forecast", "score", "tstr", "bench",
                 "demo"):
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(name + " "))
        assert cli.describe(cli.SUBCOMMANDS[name]) in line and len(line.split(maxsplit=1)[1]) > 20
    assert "Generate synthetic ECGs" in out
    assert cli.main([]) == 2  # no subcommand: the same usage, exit 2


@pytest.mark.parametrize("name", list(cli.SUBCOMMANDS))
def test_every_subcommand_help(name, capsys):
    before = list(sys.path)
    assert cli.main([name, "--help"]) == 0
    assert sys.path == before  # no entry point or script edits sys.path (the package is installed)
    out = capsys.readouterr().out
    assert out.startswith(f"usage: ecg2llm {name} ")
    assert "--" in out.split("\n", 1)[1]  # the entry point's own flags


def test_bad_subcommand_and_bad_flag(capsys):
    assert cli.main(["generat"]) == 2
    assert "did you mean 'generate'" in capsys.readouterr().err
    assert cli.main(["generate", "--num_samples", "0"]) == 2
    assert "num_samples must be >= 1" in capsys.readouterr().err
    assert cli.main(["generate", "--no_such_flag", "1"]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_scripts_need_the_checkout(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "REPO", tmp_path)  # an installed wheel: no scripts/ next to the package
    assert cli.main(["tstr", "--help"]) == 2
    err = capsys.readouterr().err
    assert "scripts/tstr.py" in err and "source checkout" in err and "make install" in err
    assert cli.main(["--help"]) == 0
    assert "needs the source checkout" in capsys.readouterr().out


@pytest.mark.skipif(not (PRETRAINED_DIR / "v2" / "config.json").is_file(),
                    reason="no shipped default LM")
@pytest.mark.parametrize("model", ["default", "v2"])  # LM v3 (beats) and LM v2 (flat tokens)
def test_generate_subcommand_matches_the_pipeline(tmp_path, model):
    from ecg2llm import ECGPipeline

    out = tmp_path / "gen"
    assert cli.main(["generate", "--model", model, "--num-samples", "2", "--seconds", "2", "--seed", "9",
                     "--out", str(out), "--png", "false", "--device", "cpu"]) == 0
    got = np.stack([np.load(out / f"sample_{i:03d}.npy").reshape(-1) for i in range(2)])
    want = ECGPipeline.from_pretrained(model, device="cpu").generate(2, 2, seed=9)
    assert np.array_equal(got, want)


def test_console_script_and_module_outside_the_checkout(tmp_path):
    exe = Path(sys.executable).parent / "ecg2llm"
    if not exe.is_file():
        pytest.skip("ecg2llm console script not installed (run `make install`)")
    r = subprocess.run([str(exe), "--help"], check=False, cwd=tmp_path, env=_user_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "generate" in r.stdout and "demo" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, "-m", "ecg2llm", "score", "--help"], check=False, cwd=tmp_path,
                       env=_user_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("usage: ecg2llm score"), r.stderr


@pytest.mark.skipif(not (PRETRAINED_DIR / "v3" / "config.json").is_file(), reason="no shipped LMs")
def test_quick_start_snippet_outside_the_checkout(tmp_path):
    """The README quick start, in a fresh interpreter whose cwd is not the checkout (installed package):
    ``default`` and ``conditional`` are LM v3 on tokenizer v3 (beats as words)."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from ecg2llm import ECGPipeline
        print("LAZY:", "torch" not in sys.modules)
        pipe = ECGPipeline.from_pretrained("default")
        x = pipe.generate(num_samples=8, seconds=4, seed=0)
        print("GEN:", x.shape, x.dtype, pipe.fs)
        y = ECGPipeline.from_pretrained("conditional").generate(4, 2, condition="rhythm:AFIB", seed=0)
        print("COND:", y.shape)
        f = pipe.forecast(x[0], fs=360, seconds=1, num_samples=16)
        print("FC:", f.shape)
        beats = pipe.tokenizer.encode_beats(x[0], 360)
        print("BEATS:", beats.coarse.shape[1] == pipe.tokenizer.layout.n_coarse, len(beats.r) >= 2)
        pipe.save_pretrained("my_model")
        same = np.array_equal(ECGPipeline.from_pretrained("my_model").generate(8, 4, seed=0), x)
        print("SAVED:", same)
        v2 = ECGPipeline.from_pretrained("v2")
        ids, state = v2.tokenizer.encode(v2.generate(1, 2, seed=0)[0], 360)
        print("V2:", ids.shape)
    """)
    assert not str(tmp_path).startswith(str(REPO))
    r = subprocess.run([sys.executable, "-c", code], check=False, cwd=tmp_path, env=_user_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for line in ("LAZY: True", "GEN: (8, 1440) float32 360.0", "COND: (4, 720)", "FC: (16, 360)",
                 "BEATS: True True", "SAVED: True", "V2: (72,)"):
        assert line in r.stdout, r.stdout
    assert (tmp_path / "my_model" / "tokenizer" / "model.safetensors").is_file()
    assert (tmp_path / "my_model" / "detail" / "model.safetensors").is_file()
    shutil.rmtree(tmp_path / "my_model")
