"""Condition adherence: does a set generated under ``rhythm:X`` look like rhythm X to a real-ECG classifier?

Launch::

    python scripts/adherence.py --out runs/adherence --data_dir ../shared/data \\
        --sets rhythm:N=runs/gen/cond_N,rhythm:AFIB=runs/gen/cond_AFIB
    python scripts/adherence.py --out runs/adherence --sets beat:V=runs/gen_v --beats true
    python scripts/adherence.py --config my_sets.yaml     # the same fields as YAML keys (sets: a list)

The rhythm classifier (:mod:`ecg2llm.eval.scorecard.rhythm`) is trained on real DS1 windows only; for each condition the
share of generated 10-s windows it recognises as requested is written beside its recall on real DS2
windows of that rhythm (the ceiling; DS1 leave-one-patient-out CV for rhythms DS2 lacks, labelled so).
With ``--beats true`` the TSTR beat classifier (:mod:`ecg2llm.eval.beat_classifier`, trained on DS1 beats) also
reads the generated ``.atr`` beat labels of every set (:func:`ecg2llm.eval.conditional.label_agreement`), beside its
sensitivity on real DS2 beats. Writes ``adherence.json`` and ``adherence.md``.

Beside the classifier, every rhythm row reads its windows with wfdb's XQRS detector (independent of the
scorecard's neurokit2 R peaks): the share faster than 100 bpm (the definition of VT and the other
tachycardias) and the share regular (RR CV < 0.1, :mod:`ecg2llm.lm.rhythm_check`), each next to the same figure
on real 10-s windows wholly inside that rhythm (DS2 where it has some, else DS1; ``real_xqrs``).

Ventricular rhythms are read from the waveform (:mod:`ecg2llm.eval.scorecard.adherence`, ``waveform`` in the JSON):
``rhythm:VT``
needs a rate above 100 bpm *and* a run of beats the real-data beat classifier (trained on real DS1 beats only)
calls V; ``rhythm:B`` and ``rhythm:T`` need its N/V bigeminy and trigeminy patterns. A rule that recognises
fewer than half of the real windows of its rhythm reports the condition "not measurable", not met. The result
can also be copied to ``--results_json`` (e.g. ``docs/results/adherence_<model>.json``, with command, git sha and date;
off by default, so a run never overwrites a committed result).
"""

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import config_to_dict, parse_config
from ecg2llm.core.io import (
    ensure_writable_dir,
    git_sha,
    write_json,
    write_run_info,
    write_text,
)


def _xqrs_stats(windows, fs) -> dict:
    """Rhythm by wfdb's XQRS (a detector independent of the scorecard's neurokit2): HR and regularity."""
    import numpy as np

    from ecg2llm.lm.rhythm_check import REGULAR_CV, rhythm_stats

    st = rhythm_stats(windows, fs)
    cv, hr = np.asarray(st["cv"], float), np.asarray(st["hr_bpm"], float)
    ok = np.isfinite(hr)
    return {"xqrs_hr_median_bpm": float(np.median(hr[ok])) if ok.any() else None,
            "xqrs_hr_over_100_share": float((hr[ok] > 100).mean()) if ok.any() else None,
            "xqrs_regular_share": float((cv[ok] < REGULAR_CV).mean()) if ok.any() else None, "xqrs_n": int(ok.sum())}


def _real_reference(rhythms, data_dir, per_class: int = 60, seed: int = 0) -> dict:
    """XQRS stats of real 10-s windows wholly inside each rhythm: DS2 where it has some, else DS1."""
    import numpy as np

    from ecg2llm.eval.scorecard.rhythm import labelled_windows
    from ecg2llm.tokenizer.splits import DS1, DS2

    rng = np.random.default_rng(seed)
    out = {}
    for name, recs, hop in (("DS2", DS2, 10.0), ("DS1", DS1, 2.5)):
        x, y, g = labelled_windows(recs, data_dir, hop_s=hop)
        for r in rhythms:
            idx = np.flatnonzero(y == r)
            if r in out or not len(idx):
                continue
            idx = np.sort(rng.choice(idx, min(per_class, len(idx)), replace=False))
            out[r] = {"source": name, "n": int(len(idx)), "patients": sorted(set(g[idx].tolist())),
                      **_xqrs_stats(x[idx], 360.0)}
    return out


def _rhythm_rows(clf, ceiling, sets, data_dir=None) -> list[dict]:
    import numpy as np

    from ecg2llm.eval.scorecard.clinical import clinical_features
    from ecg2llm.eval.scorecard.rhythm import adherence

    rows = []
    wanted = [c.partition(":")[2] for c in sets if c.startswith("rhythm:")]
    real = _real_reference(wanted, data_dir) if wanted else {}
    for cond, ws in sets.items():
        kind, _, value = cond.partition(":")
        if kind != "rhythm":
            continue
        a = adherence(clf, ws.x, value, fs=ws.fs)
        c = ceiling.get(value)
        hr = clinical_features(ws.x, ws.fs)["hr_bpm"]
        ok = np.isfinite(hr)
        rows.append({"condition": cond, **a, "hr_median_bpm": float(np.nanmedian(hr)) if ok.any() else None,
                     # tachycardias (VT, SVTA, AFL...) are > 100 bpm by definition: a rule for any set
                     "hr_over_100_share": float((hr[ok] > 100).mean()) if ok.any() else None,
                     **_xqrs_stats(ws.x, ws.fs), "real_xqrs": real.get(value),
                     "ceiling": c, "learned": value in clf.classes})
    return rows


def _wave_rules():
    from ecg2llm.eval.scorecard.adherence import RULES

    return RULES


@dataclass
class AdherenceConfig:
    """Fields of ``scripts/adherence.py`` (every field is a flag and a ``--config`` YAML key)."""

    sets: list[str]                 # condition=DIR pairs, folders from lm/generate.py (a,b or a YAML list)
    out: str = "runs/adherence"     # folder for adherence.json and adherence.md
    data_dir: str | None = None     # data root holding mitdb/ ($ECG2LLM_DATA otherwise)
    beats: bool = False             # also run the beat classifier on the sets' .atr labels
    waveform: bool = True           # VT / B / T read from the waveform by the real-data beat classifier
    results_json: str | None = None  # also copy adherence.json here (e.g. docs/results/...); none = skip
    seed: int = 0


@run_main
def main(argv=None):
    """Train the DS1 rhythm classifier, measure its ceiling and each set's adherence. Returns 0."""
    a = parse_config(AdherenceConfig, argv, description=__doc__)

    from ecg2llm.eval.data import load_synthetic
    from ecg2llm.eval.scorecard.rhythm import rhythm_ceiling, train_rhythm_classifier

    t0 = time.time()
    out = ensure_writable_dir(a.out)
    write_run_info(out, config_to_dict(a))  # the resolved config (defaults < YAML < flags)
    bad = [s for s in a.sets if s.strip() and "=" not in s]
    if bad:
        from ecg2llm.core.errors import ConfigError

        raise ConfigError(f"--sets entries are condition=DIR (e.g. rhythm:AFIB=runs/gen/afib), got {bad}")
    pairs = [s.split("=", 1) for s in a.sets if s.strip()]
    sets = {c.strip(): load_synthetic(d.strip()) for c, d in pairs}
    dirs = {c.strip(): d.strip() for c, d in pairs}
    clf, train_data = train_rhythm_classifier(data_dir=a.data_dir, seed=a.seed, return_data=True)
    ceiling = rhythm_ceiling(clf, data_dir=a.data_dir, train_data=train_data, seed=a.seed)
    rows = _rhythm_rows(clf, ceiling, sets, a.data_dir)
    lines = ["| condition | windows | recognised as requested | classifier recall on real (ceiling) | "
             "ceiling source | median HR of the set (bpm) | windows > 100 bpm | "
             "what the classifier called them | XQRS: > 100 bpm / regular (real) |",
             "|---|---:|---:|---:|---|---:|---:|---|---|"]
    for r in rows:
        c = r["ceiling"] or {}
        rec = f"{c['recall']:.2f} (n={c['n']})" if c else "not learned"
        hr = f"{r['hr_median_bpm']:.0f}" if r["hr_median_bpm"] is not None else "n/a"
        called = ", ".join(f"{k} {v}" for k, v in sorted(r["predicted"].items(), key=lambda kv: -kv[1]))
        fast = f"{r['hr_over_100_share']:.2f}" if r["hr_over_100_share"] is not None else "n/a"
        rx = r["real_xqrs"] or {}

        def f2(v):
            return "n/a" if v is None else f"{v:.2f}"
        xq = (f"{f2(r['xqrs_hr_over_100_share'])} / {f2(r['xqrs_regular_share'])} "
              f"({f2(rx.get('xqrs_hr_over_100_share'))} / {f2(rx.get('xqrs_regular_share'))}, "
              f"{rx.get('source', 'none')} n={rx.get('n', 0)})")
        lines.append(f"| {r['condition']} | {r['n']} | {r['share']:.2f} | {rec} | {c.get('source', '')} | "
                     f"{hr} | {fast} | {called} | {xq} |")
    wave = {}
    bclf = None
    if a.waveform and any(c.partition(":")[2] in _wave_rules() for c in sets if c.startswith("rhythm:")):
        from ecg2llm.eval.beat_classifier import train_classifier
        from ecg2llm.eval.beats import real_beats
        from ecg2llm.eval.scorecard.adherence import adherence_rows, real_ceiling
        from ecg2llm.tokenizer.splits import DS1

        bclf = train_classifier(real_beats(DS1, a.data_dir), progress=True)
        wanted = [c.partition(":")[2] for c in sets if c.partition(":")[2] in _wave_rules()]
        ceil = real_ceiling(bclf, wanted, a.data_dir, seed=a.seed)
        wave = {"rows": adherence_rows(bclf, sets, ceil), "real": ceil}
        lines += ["", "| condition | waveform rule | windows | meeting it | real windows meeting it | verdict |",
                  "|---|---|---:|---:|---:|---|"]
        for r in wave["rows"]:
            rr = r["real"]
            real = f"{rr['share']:.2f} ({rr['source']}, n={rr['n']})" if rr.get("share") is not None else "none"
            lines.append(f"| {r['condition']} | {r['rule']} | {r['n']} | {r['share']:.2f} | {real} | {r['verdict']} |")
    beat_rows = {}
    if a.beats:
        from ecg2llm.eval.beat_classifier import beat_metrics, train_classifier
        from ecg2llm.eval.beats import real_beats, synthetic_beats
        from ecg2llm.eval.conditional import label_agreement
        from ecg2llm.tokenizer.splits import DS1, DS2

        bclf = bclf or train_classifier(real_beats(DS1, a.data_dir), progress=True)
        ds2 = real_beats(DS2, a.data_dir)
        real_se = {c: v["se"] for c, v in beat_metrics(ds2.y, bclf.predict(ds2))["per_class"].items()}
        for cond, d in dirs.items():
            beat_rows[cond] = label_agreement(bclf, synthetic_beats(d))
        lines += ["", "| set | beat label | beats | classifier agrees | classifier sensitivity on real DS2 |",
                  "|---|---|---:|---:|---:|"]
        for cond, ag in beat_rows.items():
            for c, v in ag.items():
                lines.append(f"| {cond} | {c} | {v['n']} | {v['agreement']:.2f} | {real_se[c]:.2f} |")
        beat_rows = {"sets": beat_rows, "real_ds2_sensitivity": real_se}
    result = {"rhythm": rows, "ceiling": ceiling, "classifier": clf.describe(), "beats": beat_rows,
              "waveform": wave, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "sets": dirs, "git_sha": git_sha(), "seconds": round(time.time() - t0, 1),
              "command": " ".join(["python scripts/adherence.py",
                                   *(argv if argv is not None else sys.argv[1:])])}
    write_json(Path(out) / "adherence.json", result)
    if a.results_json:
        write_json(a.results_json, result)
    write_text(Path(out) / "adherence.md", "# Condition adherence\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"[adherence] wrote {out}/adherence.json in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
