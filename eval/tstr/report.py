"""Write the TSTR study's outputs: ``tstr.json``, ``tstr.md`` and two figures (see :mod:`ecg2llm.eval.tstr.study`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ecg2llm.core.io import write_json

from ..beats import AFTER, BEFORE, CLASSES, FS

ARM_NAMES = {"a": "(a) real DS1", "b": "(b) synthetic only", "c": "(c) DS1 + synthetic S/V/F",
             "d": "(d) DS1 + agreed synthetic S/V/F"}


def _ms(m: float, s: float, digits: int = 3) -> str:
    return "n/a" if m != m else f"{m:.{digits}f} ± {s:.{digits}f}"


def _classifier_line(result: dict) -> str:
    cfg = result["config"]
    if cfg.get("classifier", "cnn") == "cnn":
        return f"beat classifier: 1-D CNN + RR features ({cfg['epochs']} epochs), seeds vary initialisation and order"
    c = result.get("classifier", {}).get("config", {})
    model = c.get("model", "trees")
    trees = (f"gradient-boosted trees (scikit-learn HistGradientBoostingClassifier; features "
             f"`{c.get('feature_set')}`, {c.get('max_iter')} rounds, learning rate {c.get('learning_rate')}, "
             f"{c.get('max_leaf_nodes')} leaves, class weights frequency^-{c.get('class_weight_power')})")
    seeds = f"seeds vary the random {c.get('max_features')} share of features tried at each split"
    if model == "trees":
        return f"beat classifier: {trees}; {seeds}"
    extra = ""
    if model == "two-stage" and c.get("view_feature_set"):
        kind = "boosted trees" if c.get("view_model") == "trees" else "L2 logistic regression"
        extra = (f", averaged with {kind} on features `{c.get('view_feature_set')}` (class weights "
                 f"frequency^-{c.get('view_class_weight_power')})")
    if model == "two-stage" and c.get("ns_train", "all") == "NS":
        extra += ", trained on the N and S beats only" + (" (trees monotone in prematurity)" if c.get("monotone")
                                                          else "")
    if model == "two-stage" and float(c.get("s_threshold", 0.5)) != 0.5:
        extra += f", S called at N/S probability >= {c.get('s_threshold')}"
    if model == "two-stage" and c.get("second_model") == "trees":
        return (f"beat classifier: two stages: {trees} call V and F; the other beats are split into N and S by "
                f"second boosted trees (same settings) on features `{c.get('linear_feature_set')}`, class weights "
                f"frequency^-{c.get('linear_class_weight_power')}{extra}; {seeds} (both stages)")
    if model == "two-stage":
        return (f"beat classifier: two stages: {trees} call V and F; the other beats are split into N and S by "
                f"L2 logistic regression (C {c.get('C')}) on standardised features `{c.get('linear_feature_set')}`, "
                f"class weights frequency^-{c.get('linear_class_weight_power')}; {seeds} (the logistic "
                "regression is deterministic)")
    if model == "trees+logreg":
        return (f"beat classifier: the mean of two models' probabilities (trees' share {c.get('vote')}): "
                f"{trees}, and L2 logistic regression (C {c.get('C')}) on standardised features "
                f"`{c.get('linear_feature_set')}`, class weights frequency^-{c.get('linear_class_weight_power')}; "
                f"{seeds} (the logistic regression is deterministic)")
    name = {"logreg": f"L2 logistic regression (C {c.get('C')})", "lda": "linear discriminants (equal priors)",
            "mlp": f"a one-hidden-layer MLP ({c.get('hidden')} units)"}.get(model, model)
    seeds = "seeds vary the MLP initialisation" if model == "mlp" else "seeds change nothing (deterministic)"
    return (f"beat classifier: {name} on standardised features `{c.get('feature_set')}`, class weights "
            f"frequency^-{c.get('class_weight_power')}; {seeds}")


def _steering(result: dict) -> str:
    """How the sets were steered and which synthetic S/V/F beats arms (c) and (d) add."""
    cfg = result["config"]
    rule = cfg.get("synthetic_minority", "all")
    if rule == "requested":  # LM v3: control tokens and guidance only
        how = f"classifier-free guidance {cfg.get('guidance')}, no sampler rule"
    else:
        how = f"log-odds strengths {cfg['strengths']}" + (f", guidance {cfg['guidance']}" if cfg.get("guidance")
                                                           else "")
    if cfg.get("temperature", 1.0) != 1.0:
        how += f", temperature {cfg['temperature']:g}"
    desc = (result.get("synthetic_minority") or {}).get("description")
    return how + (f"; arms (c) and (d) add {desc}" if desc else "")


def cv_markdown(sel: dict) -> list[str]:
    """The DS1 cross-validation table that chose the classifier (``result["classifier_selection"]``)."""
    if sel.get("choose", "any") == "mean_reference":
        rule = ("Chosen: the highest macro-F1 among the rows whose N/S stage reads mean references only "
                "(`rr_mean` sets); the best of all rows is marked too. That restriction was decided after a DS2 "
                "diagnosis (record 232, whose majority rhythm is ectopic), so DS2 is not a blind test of it.")
    else:
        rule = "Highest macro-F1 chosen."
    lines = ["## Choosing the classifier on DS1", "",
             f"Patient-grouped {sel['n_splits']}-fold cross-validation on DS1 "
             f"(folds by record: {'; '.join(' '.join(f) for f in sel['folds'])}); scores of the pooled "
             f"out-of-fold predictions. {rule}", "",
             ("| config | macro-F1 | " + " | ".join(f"F1 {c}" for c in CLASSES)
              + " | Se S | PPV S | fold macro-F1 |"),
             "|---|---|" + "---|" * len(CLASSES) + "---|---|---|"]
    for name, r in sel["results"].items():
        f = r["fold_macro_f1"]
        best = " (best of all rows)" if name == sel.get("best_any") and name != sel["chosen"] else ""
        mark = " **(chosen)**" if name == sel["chosen"] else best
        lines.append(f"| {name}{mark} | {r['macro_f1']:.3f} | "
                     + " | ".join(f"{r['per_class'][c]['f1']:.2f}" for c in CLASSES)
                     + f" | {r['per_class']['S']['se']:.2f} | {r['per_class']['S']['ppv']:.2f} | "
                     f"{min(f):.2f}-{max(f):.2f} |")
    return lines + [""]


def markdown(result: dict) -> str:
    """The tables of ``tstr.md``."""
    cfg = result["config"]
    lines = [
        "# Train on synthetic, test on real (MIT-BIH, inter-patient)", "",
        f"Model `{cfg['model']}`; generated {cfg['beat_sequences']} x {cfg['seconds']:g} s records per set "
        f"(unconditional, beat:S, beat:V, beat:F; {_steering(result)}); "
        f"{_classifier_line(result)}; seeds {cfg['seeds']}; tested on all real DS2 beats. "
        "AAMI classes N, S, V, F (Q excluded: 8 DS1 / 7 DS2 beats). Mean ± sd over seeds.", "",
    ]
    if result.get("command"):
        lines += [f"Command: `{result['command']}` (git {str(result.get('git_sha'))[:10]}, {result.get('date')}).", ""]
    lines += ["## DS2 scores per training arm", "",
              "| arm | macro-F1 | " + " | ".join(f"Se {c} | PPV {c} | F1 {c}" for c in CLASSES) + " |",
              "|---|---|" + "---|---|---|" * len(CLASSES)]
    for arm, r in result["arms"].items():
        cells = [_ms(r["macro_f1_mean"], r["macro_f1_sd"])]
        for c in CLASSES:
            cells += [_ms(r["per_class"][c][k], r["per_class_sd"][c][k], 2) for k in ("se", "ppv", "f1")]
        lines.append(f"| {ARM_NAMES.get(arm, arm)} | " + " | ".join(cells) + " |")
    g = result["goal"]
    yes = {True: "met", False: "not met"}
    lines += ["", f"Goal (a) SVEB F1 ≥ 0.5: **{yes[g['a_sveb_f1_reaches_0.5']]}** ({g['a_sveb_f1']:.3f}); "
              f"VEB F1 ≥ 0.85: **{yes[g['a_veb_f1_reaches_0.85']]}** ({g['a_veb_f1']:.3f}). "
              f"Goal (c) − (a) > 2 sd(a): **{yes[g['c_beats_a_beyond_2sd']]}** "
              f"(c − a = {g['c_minus_a']:+.3f}, 2 sd(a) = {g['two_sd_a']:.3f})."
              + (f" (d) − (a) = {g['d_minus_a']:+.3f}: **{'beyond' if g['d_beats_a_beyond_2sd'] else 'within'}** "
                 "2 sd(a)." if "d_minus_a" in g else "") + f" (b) / (a) = {g['b_over_a']:.2f}.", ""]
    if result.get("classifier_selection"):
        lines += cv_markdown(result["classifier_selection"])
    lines += ["## Beats", "", "| set | N | S | V | F |", "|---|---|---|---|---|"]
    for name, c in result["beats"].items():
        lines.append(f"| {name} | " + " | ".join(str(c.get(k, 0)) for k in CLASSES) + " |")
    lines += ["", "## Agreement of generated labels with a real-data classifier", "",
              "Arm (a)'s classifier (first seed) labels each generated beat; agreement = share it assigns the "
              "generated label. The last row is the same classifier on real DS2 beats (its sensitivity), for scale.",
              "", "| set | " + " | ".join(f"{c}: n, agree" for c in CLASSES) + " |", "|---|" + "---|" * len(CLASSES)]
    for name, ag in result["agreement"].items():
        cells = [f"{ag[c]['n']}, {ag[c]['agreement']:.2f}" if c in ag else "–" for c in CLASSES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if result.get("requested_class"):
        lines += ["", "| requested | share of generated beats with that label | agreement |", "|---|---|---|"]
        for name, r in result["requested_class"].items():
            ag = "–" if r["agreement"] is None else f"{r['agreement']:.2f}"
            lines.append(f"| {name} | {r['share_of_beats']:.2f} | {ag} |")
    if result.get("fidelity"):
        lines += ["", "## Fidelity per condition (stage-3 metrics vs real DS2 windows with that condition)", "",
                  "| condition | row | windows | rFED | MMD | precision | recall | valid rhythm | HR W1 (bpm) | disc |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name, f in result["fidelity"].items():
            if "skipped" in f:
                lines.append(f"| {name} | skipped: {f['skipped']} |  |  |  |  |  |  |  |  |")
                continue
            for row in ("synthetic", "real DS1 (same condition)"):
                if row not in f:
                    continue
                r = f[row]
                vals = [r.get(k) for k in ("rfed", "mmd", "precision", "recall", "valid_rhythm_rate", "hr_w1_bpm",
                                           "disc_score")]
                cells = ["–" if v is None else f"{v:.3g}" for v in vals]
                lines.append(f"| {name} | {row} | {r['n_windows']} (ref {f['n_reference_windows']}) | "
                             + " | ".join(cells) + " |")
    sec = result["seconds"]
    lines += ["", f"Generation {sec['generation']:.0f} s, whole study {sec['total']:.0f} s.", ""]
    return "\n".join(lines)


def beat_figure(ds2, synthetic, path: Path) -> None:
    """Mean ± sd beat of each class: real DS2 vs synthetic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = (np.arange(-BEFORE, AFTER) / FS) * 1000
    fig, axes = plt.subplots(1, len(CLASSES), figsize=(14, 3.2), sharey=True)
    for ax, (i, c) in zip(axes, enumerate(CLASSES)):
        for beats, color, label in ((ds2, "k", "real DS2"), (synthetic, "tab:red", "synthetic")):
            x = beats.x[beats.y == i]
            if not len(x):
                continue
            m, s = x.mean(0), x.std(0)
            ax.plot(t, m, color=color, lw=1.4, label=f"{label} (n={len(x)})")
            ax.fill_between(t, m - s, m + s, color=color, alpha=0.15)
        ax.set_title(f"class {c}")
        ax.set_xlabel("ms from R peak")
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("mV (baseline removed)")
    fig.suptitle("Beat templates: mean ± sd")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def arms_figure(arms: dict, path: Path) -> None:
    """Per-class sensitivity and PPV of each arm (mean, error bar = sd over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
    xs = np.arange(len(CLASSES))
    w = 0.8 / max(len(arms), 1)
    for ax, key, title in ((axes[0], "se", "sensitivity on DS2"), (axes[1], "ppv", "positive predictive value on DS2")):
        for j, (arm, r) in enumerate(arms.items()):
            m = [r["per_class"][c][key] for c in CLASSES]
            s = [r["per_class_sd"][c][key] for c in CLASSES]
            ax.bar(xs + j * w - 0.4 + w / 2, m, w, yerr=s, capsize=2, label=ARM_NAMES.get(arm, arm))
        ax.set_xticks(xs, CLASSES)
        ax.set_ylim(0, 1)
        ax.set_title(title)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=max(len(arms), 1), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))  # the legend sits below the panels, over no bar
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def examples_figure(sets: dict, path: Path, seconds: float = 10.0) -> None:
    """The first ``seconds`` of the first record of each generated set, its labels above the R peaks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import wfdb

    names = [n for n in sets if (Path(sets[n]) / "sample_000.hea").is_file()]
    fig, axes = plt.subplots(len(names), 1, figsize=(13, 1.7 * len(names) + 0.4), squeeze=False)
    colors = {"N": "0.35", "S": "tab:blue", "V": "tab:red", "F": "tab:purple", "Q": "tab:gray"}
    for ax, name in zip(axes[:, 0], names):
        base = str(Path(sets[name]) / "sample_000")
        rec = wfdb.rdrecord(base)
        n = min(rec.sig_len, int(seconds * rec.fs))
        x = rec.p_signal[:n, 0]
        ax.plot(np.arange(n) / rec.fs, x, lw=0.7, color="k")
        ann = wfdb.rdann(base, "atr") if Path(base + ".atr").is_file() else None
        if ann is not None:
            top = np.nanmax(x) + 0.15
            for smp, sym, aux in zip(ann.sample, ann.symbol, ann.aux_note):
                if smp >= n:
                    continue
                if sym == "+":
                    ax.text(smp / rec.fs, top + 0.25, aux, fontsize=7, color="tab:green")
                else:
                    cls = {"A": "S"}.get(sym, sym)
                    ax.text(smp / rec.fs, top, cls, fontsize=7, ha="center", color=colors.get(cls, "k"))
            ax.set_ylim(np.nanmin(x) - 0.2, top + 0.6)
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
        ax.set_xlim(0, seconds)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("s")
    fig.suptitle("Generated under each condition (labels: the generated beat classes, S in blue, V red, F purple)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


#: In ``docs_md``, the text after this line is hand-written and kept when the script rewrites the page.
NOTES_MARKER = "<!-- notes: hand-written below, kept by scripts/tstr.py -->"


def write_outputs(result: dict, out: Path) -> None:
    """``tstr.json``, ``tstr.md`` and ``figures/{beat_templates,arms}.png`` into ``out`` (atomic writes); also
    ``tstr.json`` to ``config.results_json`` and ``tstr.md`` to ``config.docs_md`` when those are set."""
    from ecg2llm.core.io import atomic_path

    out = Path(out)
    figs = result.pop("_figures", None)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    if figs is not None:
        with atomic_path(out / "figures" / "beat_templates.png") as tmp:
            beat_figure(figs["ds2"], figs["synthetic"], tmp)
        with atomic_path(out / "figures" / "conditional_examples.png") as tmp:
            examples_figure(figs["sets"], tmp)
    with atomic_path(out / "figures" / "arms.png") as tmp:
        arms_figure(result["arms"], tmp)
    md = markdown(result)
    write_json(out / "tstr.json", result)
    with atomic_path(out / "tstr.md") as tmp:
        Path(tmp).write_text(md)
    cfg = result.get("config", {})
    if cfg.get("results_json"):
        Path(cfg["results_json"]).parent.mkdir(parents=True, exist_ok=True)
        write_json(cfg["results_json"], result)
    if cfg.get("docs_md"):
        docs = Path(cfg["docs_md"])
        docs.parent.mkdir(parents=True, exist_ok=True)
        notes = ""  # hand-written reading of the numbers, below NOTES_MARKER, survives a rerun
        if docs.is_file() and NOTES_MARKER in docs.read_text():
            notes = docs.read_text().split(NOTES_MARKER, 1)[1]
        with atomic_path(docs) as tmp:
            Path(tmp).write_text(md + (f"\n{NOTES_MARKER}{notes}" if notes else ""))
