"""Why generated V beats look less like V than real ones: a diagnosis of LM v3's ectopic beats.

Launch (from the repo root)::

    python scripts/v_beat_check.py --sets beat:V=runs/gen/v3r_beat_V_g3,beat:V+label1=runs/gen/v3r_lc1_beat_V_g3 \\
        --store runs/store/beats_v3_all --out docs/results/v_beat_check.json --data_dir ../shared/data

For MIT-BIH (the LM's beat store: DS1 training records and DS2, MLII) and each generated set (folders of
``lm/generate.py`` with ``beat_units.npy``) it measures, for every V beat that follows an N beat:

- ``coarse_shared_with_previous_n``: the share of its coarse tokens equal to the N beat's before it (a V beat
  that copies its neighbour's shape);
- ``rr_ratio_median`` / ``next_rr_ratio_median``: its RR and the next beat's RR over the N beat's RR (how
  premature it is, and the pause after it);
- ``copy``: the same question asked of the LM, teacher-forced: its probability that a V beat's first coarse token
  (the main shape component) is the previous N beat's, beside how often it is, for the first V beat of a sequence
  (no V before it to take a shape from) and the later ones; on 150-beat tiles of the training records' MLII and of
  DS2, and on each generated set read back under its own request prefix (what the model believed while it drew
  them).

Then the real-data beat classifier of the TSTR study and of ``scripts/adherence.py`` (trained on DS1 beats
only) is asked about V beats: real DS2 V beats as recorded; the same beats coded by the LM's tokenizer copy and
decoded from their coarse tokens with the detail head's ``mean`` codes (what generation decodes: the ceiling the
representation allows); and each generated set's V beats, as generated and with the RR features of random real
DS2 V beats (what their shapes alone give). Writes one JSON file.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError


@dataclass
class VBeatConfig:
    """Fields of ``scripts/v_beat_check.py`` (every field is a flag)."""

    sets: list[str] = field(default_factory=list)  # name=DIR pairs of generated LM v3 folders
    store: str = "runs/store/beats_v3_all"  # the LM's beat store (lm/train.py builds it; DS1 train + DS2 test)
    model: str = "default"  # the LM v3 whose tokenizer copy and detail head decode the real beats
    out: str = "runs/v_beat_check.json"
    data_dir: str | None = None
    seed: int = 0


def ectopic_stats(units_list, v_id: int, n_id: int, rr_s: np.ndarray) -> dict:
    """Coarse tokens shared with the previous N beat and RR ratios (``rr_s``: seconds of each RR id) of every V
    beat after an N beat."""
    shared, pre, post = [], [], []
    for u in units_list:
        u = np.asarray(u)
        u = u[(u >= 0).all(1)] if u.ndim == 2 else u  # lm/generate.py pads rows with -1
        lab, rr, co = u[:, 0], rr_s[u[:, 1]], u[:, 2:]
        for i in range(1, len(u) - 1):
            if lab[i] == v_id and lab[i - 1] == n_id:
                shared.append(float((co[i] == co[i - 1]).mean()))
                pre.append(rr[i] / rr[i - 1])
                post.append(rr[i + 1] / rr[i - 1])
    return {"v_after_n": len(shared), "coarse_shared_with_previous_n": float(np.mean(shared)) if shared else None,
            "rr_ratio_median": float(np.median(pre)) if pre else None,
            "next_rr_ratio_median": float(np.median(post)) if post else None}


def decoded_real_v(blm, records, clf, v_index: int) -> dict:
    """Classifier agreement on DS2 V beats decoded from the LM's coarse tokens with the head's ``mean`` detail."""
    from ecg2llm.eval.beats import BeatSet, cut_beats
    from ecg2llm.lm.beat_tokens import decode_beats

    parts = []
    for k, r in enumerate(records):
        if len(r.r) < 5:
            continue
        lab, rr, co = blm.layout.split_units(r.units[None])
        det = blm.detail.predict(rr, co, mode="mean", seed=k)[0]
        n = int(r.r[-1] + blm.tok.fs)
        x, pos = decode_beats(blm.tok, rr[0], co[0], det, n)
        parts.append(cut_beats(x, pos, [str(c) for c in r.classes[:len(pos)]], blm.tok.fs, r.record))
    bs = BeatSet.concat(parts, "DS2 decoded")
    m = bs.y == v_index
    return {"beats": int(m.sum()), "agreement": float((clf.predict(bs.subset(np.flatnonzero(m))) == v_index).mean())}


def copy_probability(blm, seqs, v_id: int, n_id: int, batch: int = 8) -> dict:
    """Teacher-forced copy: for every V beat right after an N beat of ``seqs`` (a list of 1-D LongTensors, BOS +
    prefix + beat units in LM ids), the LM's probability that its first coarse token (the beat's main shape
    component) is the N beat's, and how often it is; split into the first V beat of a sequence and the later ones
    (a first V has no V beat before it to copy its shape from)."""
    import torch

    from ecg2llm.lm.beat_layout import N_PREFIX

    lay = blm.layout
    tpb, lc, head = lay.tokens_per_beat, lay.label_col, 1 + N_PREFIX
    got = {"first": ([], []), "later": ([], [])}
    with torch.no_grad():
        for i in range(0, len(seqs), batch):
            part = seqs[i:i + batch]
            L = max(len(q) for q in part)
            x = torch.stack([torch.nn.functional.pad(q, (0, L - len(q)), value=int(q[0])) for q in part])
            lp = torch.log_softmax(blm.model(input_ids=x).logits.float(), -1)
            for r, q in enumerate(part):
                nb = (len(q) - head) // tpb
                labels = q[head + lc: head + nb * tpb: tpb]
                seen = False
                for k in range(1, nb):
                    if int(labels[k]) == v_id and int(labels[k - 1]) == n_id:
                        c0 = head + k * tpb + lc + 2
                        prev = int(q[c0 - tpb])
                        p_, f_ = got["later" if seen else "first"]
                        p_.append(float(lp[r, c0 - 1, prev].exp()))
                        f_.append(float(int(q[c0]) == prev))
                    seen |= int(labels[k]) == v_id
    return {k: {"v_after_n": len(p), "model_copy_probability": float(np.mean(p)) if p else None,
                "copied": float(np.mean(f)) if f else None} for k, (p, f) in got.items()}


def generated_sequences(blm, folder) -> list:
    """The LM sequences (BOS + the request's prefix + beat units) of a generated LM v3 folder."""
    import json

    import torch

    cfg = json.loads((Path(folder) / "manifest.json").read_text()).get("config", {})
    rhythm, beats = blm.spec.parse_conditions(list(cfg.get("condition") or []))
    head = blm.prefix(1, cfg.get("source") or "mitdb", cfg.get("lead") or "MLII", rhythm,
                      beats[0] if beats else None)[0].cpu()
    out = []
    for u in np.load(Path(folder) / "beat_units.npy"):
        u = u[(u >= 0).all(1)]
        units = blm.layout.units(u[:, 0], u[:, 1], u[:, 2:])
        out.append(torch.cat([head, torch.as_tensor(units.reshape(-1))]))
    return out


@run_main
def main(argv=None) -> int:
    """Measure real and generated V beats (see the module docstring); writes ``--out``."""
    import copy

    from ecg2llm.core.io import git_sha, write_json
    from ecg2llm.eval.beat_classifier import train_classifier
    from ecg2llm.eval.beats import CLASSES, real_beats, synthetic_beats
    from ecg2llm.lm.beat_generate import BeatLM
    from ecg2llm.lm.beatstream import load_records
    from ecg2llm.lm.model import load_lm
    from ecg2llm.tokenizer.splits import DS1, DS2

    a = parse_config(VBeatConfig, argv, description=__doc__)
    bad = [s for s in a.sets if "=" not in s]
    if bad or not a.sets:
        raise ConfigError(f"--sets takes name=DIR pairs of lm/generate.py folders (LM v3), got {a.sets}")
    sets = dict(s.split("=", 1) for s in a.sets)
    missing = [d for d in sets.values() if not (Path(d) / "beat_units.npy").is_file()]
    if missing:
        raise ConfigError(f"{missing[0]} has no beat_units.npy: give folders written by lm/generate.py for LM v3")
    if not (Path(a.store) / "meta.json").is_file():
        raise ConfigError(f"no beat store at {a.store}: lm/train.py --config configs/lm/v3_continue.yaml builds it "
                          "(or python -m ecg2llm.lm.beatstream --config ... --store DIR)")
    t0 = time.time()
    model, folder = load_lm(a.model)
    blm = BeatLM.of_loaded(model, folder)
    v_id, n_id = blm.spec.id_of("beat:V"), blm.spec.id_of("beat:N")
    rr_s = np.asarray(blm.tok.rr_seconds(np.arange(blm.layout.n_rr)), np.float64)
    records, _ = load_records(a.store)
    mit = [r for r in records if r.db == "mitdb" and r.lead == "MLII"]
    result = {"real": {split: ectopic_stats([r.units for r in mit if r.split == split], v_id, n_id, rr_s)
                       for split in ("train", "test")}}
    import torch

    from ecg2llm.lm.beatstream import BeatCorpus

    corpus = BeatCorpus(records, blm.spec, blm.layout, blm.model.config.pad_token_id)
    corpus.recs["train"] = [r for r in corpus.recs["train"] if r.db == "mitdb" and r.lead == "MLII"]
    for split in ("train", "test"):  # the training records' MLII (what the model fits) and DS2 (unseen patients)
        tiles = torch.as_tensor(corpus.tiles(split, blm.context - 1))
        result["real"][split]["copy"] = copy_probability(
            blm, [torch.cat([torch.tensor([blm.bos]), t]) for t in tiles], v_id, n_id)
    clf = train_classifier(real_beats(DS1, a.data_dir))
    v = CLASSES.index("V")
    real = real_beats(DS2, a.data_dir)
    rv = real.subset(np.flatnonzero(real.y == v))
    result["classifier_on_v"] = {"real DS2": float((clf.predict(rv) == v).mean()),
                                 "real DS2 coded and decoded (coarse + detail head mean)":
                                     decoded_real_v(blm, [r for r in mit if r.split == "test"], clf, v)}
    rng = np.random.default_rng(a.seed)
    result["sets"] = {}
    for name, d in sets.items():
        s = synthetic_beats(d)
        sv = s.subset(np.flatnonzero(s.y == v))
        swapped = copy.copy(sv)
        swapped.rr = rv.rr[rng.integers(0, len(rv), len(sv))]
        result["sets"][name] = {"folder": d, **ectopic_stats(np.load(Path(d) / "beat_units.npy"), v_id, n_id, rr_s),
                                "v_beats": len(sv), "classifier_agrees": float((clf.predict(sv) == v).mean()),
                                "classifier_agrees_with_real_v_rr": float((clf.predict(swapped) == v).mean()),
                                "copy": copy_probability(blm, generated_sequences(blm, d), v_id, n_id)}
    result.update({"command": " ".join(["python scripts/v_beat_check.py", *(sys.argv[1:] if argv is None else argv)]),
                   "git_sha": git_sha(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "model": a.model, "seconds": round(time.time() - t0, 1)})
    write_json(a.out, result)
    print(f"[v_beat_check] wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
