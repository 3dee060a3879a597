"""``report.md`` / ``report.html`` and their figures, from a scored :class:`~ecg2llm.eval.scorecard.scorer.Scorer`.

Figures (PNG, matplotlib Agg): ``overlays.png`` (real vs synthetic windows and median beats),
``hr_hist.png`` (heart-rate histograms of every row), ``embedding.png`` (2-D PCA of the embeddings),
``forecast_fan.png`` (prefix, truth, sampled median and 50 % / 90 % bands, naive forecast).
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np

from ecg2llm.core.io import atomic_path, write_text

from .metrics import METRICS

ARROW = {"lower": "↓", "higher": "↑", "target": "→1"}
TABLE_KEYS = (
    "rfed",
    "fed",
    "mmd",
    "precision",
    "recall",
    "density",
    "coverage",
    "valid_rhythm_rate",
    "hr_w1_bpm",
    "sdnn_w1_ms",
    "rmssd_w1_ms",
    "r_amp_w1_mv",
    "beat_corr",
    "disc_score",
    "disc_score_ds1",
    "memorization_ratio",
    "near_copy_rate",
)
FORECAST_KEYS = ("forecast_crps", "forecast_mae_median")
COLORS = ("black", "tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink")


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    a = abs(v)
    return f"{v:.3g}" if a < 1 else f"{v:.2f}" if a < 100 else f"{v:.0f}"


def _savefig(fig, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fig_overlays(scorer, primary: str | None, out: Path, n: int = 3) -> str | None:
    """Real vs synthetic example windows (left/right) and the median beats of both sets overlaid."""
    plt = _plt()
    from .metrics.physiology import PRE_S

    s = scorer.sets.get(primary) if primary else None
    cols = 3 if s is not None else 2
    fig, axes = plt.subplots(n, cols, figsize=(5 * cols, 1.9 * n), squeeze=False)
    rng = np.random.default_rng(0)
    ref = scorer.reference
    t = np.arange(ref.x.shape[1]) / ref.fs
    for i, j in enumerate(rng.choice(len(ref), n, replace=False)):
        axes[i, 0].plot(t, ref.x[j], color="black", lw=0.6)
        axes[i, 0].set_title(f"real DS2 {ref.names[j]}", fontsize=8)
    if s is not None:
        for i, j in enumerate(rng.choice(len(s.windows), min(n, len(s.windows)), replace=False)):
            axes[i, 1].plot(t, s.windows.x[j], color="tab:red", lw=0.6)
            axes[i, 1].set_title(f"{primary}: {s.windows.names[j]}", fontsize=8)
    beat_ax = axes[0, cols - 1]
    for k, (name, tmpl, color) in enumerate(
        [("real DS2", scorer.ref_features.phys["template"], "black")]
        + [
            (nm, ss.features.phys["template"], COLORS[1 + i % 7])
            for i, (nm, ss) in enumerate(scorer.sets.items())
        ]
    ):
        tm = tmpl[np.isfinite(tmpl).all(1)]
        if not len(tm):
            continue
        tb = np.arange(tm.shape[1]) / scorer.reference.fs - PRE_S
        med = np.median(tm, 0)
        beat_ax.plot(tb, med, color=color, lw=1.2, label=name)
        if k == 0:
            beat_ax.fill_between(tb, *np.percentile(tm, [25, 75], axis=0), color="grey", alpha=0.3)
    beat_ax.set_title("median beat (band: real IQR)", fontsize=8)
    beat_ax.legend(fontsize=6)
    for i in range(1, n):
        axes[i, cols - 1].axis("off")
    for ax in axes[-1, : cols - 1]:
        ax.set_xlabel("s")
    for ax in axes[:, 0]:
        ax.set_ylabel("mV")
    fig.tight_layout()
    return _savefig(fig, out / "overlays.png")


def fig_hr(scorer, out: Path) -> str:
    """Heart-rate histograms (valid windows) of the reference and every scored row."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bins = np.arange(30, 222, 6)
    sets = [("real DS2 (reference)", scorer.ref_features)] + [(n, s.features) for n, s in scorer.sets.items()]
    for i, (name, f) in enumerate(sets):
        hr = f.phys["hr_bpm"][f.phys["valid"]]
        ax.hist(
            hr,
            bins=bins,
            density=True,
            histtype="step",
            lw=1.5,
            color=COLORS[i % len(COLORS)],
            label=f"{name} (n={len(hr)})",
        )
    ax.set_xlabel("heart rate (bpm), valid 10-s windows")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    return _savefig(fig, out / "hr_hist.png")


def fig_embedding(scorer, out: Path) -> str:
    """2-D PCA (fit on the real reference) of every set's embeddings."""
    plt = _plt()
    ref = scorer.ref_features.emb.astype(np.float64)
    mu = ref.mean(0)
    _, _, vt = np.linalg.svd(ref - mu, full_matrices=False)
    proj = vt[:2].T
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    sets = [("real DS2 (reference)", scorer.ref_features)] + [(n, s.features) for n, s in scorer.sets.items()]
    for i, (name, f) in enumerate(sets):
        z = (f.emb - mu) @ proj
        ax.scatter(z[:, 0], z[:, 1], s=6, alpha=0.5, color=COLORS[i % len(COLORS)], label=name)
    ax.set_xlabel("PC1 (of real DS2)")
    ax.set_ylabel("PC2")
    ax.legend(fontsize=7, markerscale=2)
    return _savefig(fig, out / "embedding.png")


def fig_forecast(forecast: dict, out: Path, n: int = 4) -> str:
    """Fan chart: prefix, truth, median of the sampled paths, 50 % / 90 % bands, naive last-beat forecast."""
    plt = _plt()
    from .metrics.forecast import naive_last_beat

    fs = float(forecast["fs"])
    pre, tru, smp = forecast["prefix"], forecast["truth"], forecast["samples"]
    n = min(n, len(pre))
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.0 * n), squeeze=False)
    naive = naive_last_beat(pre[:n], tru.shape[1], fs)
    for i in range(n):
        ax = axes[i, 0]
        tp = np.arange(-pre.shape[1], 0) / fs
        th = np.arange(tru.shape[1]) / fs
        ax.plot(tp, pre[i], color="black", lw=0.7)
        ax.plot(th, tru[i], color="black", lw=0.7, ls="--", label="truth")
        q = np.percentile(smp[i], [5, 25, 50, 75, 95], axis=0)
        ax.fill_between(th, q[0], q[4], color="tab:blue", alpha=0.2, label="90 %")
        ax.fill_between(th, q[1], q[3], color="tab:blue", alpha=0.35, label="50 %")
        ax.plot(th, q[2], color="tab:blue", lw=0.9, label="median")
        ax.plot(th, naive[i], color="tab:grey", lw=0.7, ls=":", label="naive last beat")
        title = f"{forecast['records'][i]}@{forecast['starts'][i]}" if "records" in forecast else f"task {i}"
        ax.set_title(title, fontsize=8)
        ax.set_ylabel("mV")
    axes[0, 0].legend(fontsize=6, ncol=5)
    axes[-1, 0].set_xlabel("s (0 = end of the prefix)")
    fig.tight_layout()
    return _savefig(fig, out / "forecast_fan.png")


def _table(rows: dict[str, dict], keys) -> list[list[str]]:
    head = ["row", "n"] + [f"{k} {ARROW[METRICS[k][0]]}" for k in keys]
    body = [
        [name, _fmt(r.get("n_windows", r.get("forecast_n_tasks")))] + [_fmt(r.get(k)) for k in keys]
        for name, r in rows.items()
    ]
    return [head] + body


def _md_table(tab: list[list[str]]) -> str:
    lines = ["| " + " | ".join(tab[0]) + " |", "|" + "---|" * len(tab[0])]
    lines += ["| " + " | ".join(r) + " |" for r in tab[1:]]
    return "\n".join(lines)


VERDICT_MARK = {"as_real": "as real", "worse": "**worse**", "better": "better", "n/a": "n/a"}


def headline_tables(metrics: dict) -> list[str]:
    """Markdown lines: the primary row's headline table, then every row's verdicts side by side."""
    from .headline import HEADLINE, LM_ONLY

    rows = {n: r for n, r in metrics.get("rows", {}).items() if r.get("headline")}
    extra = {k: v for k, v in LM_ONLY.items() if any(k in r["headline"] for r in rows.values())}
    meanings = {**HEADLINE, **extra}
    if not rows:
        return []
    primary = metrics.get("primary_row")
    md = ["## Verdict against real unseen patients", ""]
    pool = (metrics.get("calibration") or {}).get("pool")
    if pool:  # the band pool against the scored LM's training data: exclusions are reported, never silent
        md += [f"Band pool: records {', '.join(pool['records'])}. {pool['note']}"
               + (f" (training data: `{pool['training_data_source']}`)." if pool.get("training_data_source") else "."),
               ""]
    if primary in rows:
        r = rows[primary]
        md += [
            f"**{primary}: {r['verdict'].replace('_', ' ')}** ({r['n_windows']} windows). Each band is the "
            "spread of the metric for real windows of patients outside the reference, at the same n, "
            "against the same reference (leave-patients-out draws); higher = further from real.",
            "",
            "| headline metric | value | real band | verdict | meaning |",
            "|---|---:|---:|---|---|",
        ]
        for k, meaning in meanings.items():
            if k not in r["headline"]:
                continue
            h = r["headline"][k]
            md.append(
                f"| {k} | {_fmt(h['value'])} | [{_fmt(h['real_band'][0])}, {_fmt(h['real_band'][1])}] | "
                f"{VERDICT_MARK[h['verdict']]} | {meaning} |"
            )
        md += [""]
        if r.get("clinical"):
            md += ["Clinical measurements, each a scaled distance to real with its band:", "",
                   "| measurement | distance | real band | verdict |", "|---|---:|---:|---|"]
            for k, h in r["clinical"].items():
                md.append(f"| {k} | {_fmt(h['value'])} | [{_fmt(h['real_band'][0])}, "
                          f"{_fmt(h['real_band'][1])}] | {VERDICT_MARK[h['verdict']]} |")
            md += [""]
        if r.get("discriminator_draws"):
            dd = r["discriminator_draws"]
            md += [f"The discriminator over {len(dd['values'])} draws of windows, clusters and folds: mean "
                   f"{_fmt(dd['mean'])} ± {_fmt(dd['sd'])} (min {_fmt(dd['min'])}, max {_fmt(dd['max'])}); the "
                   "verdict reads the mean, as each real band draw reads the mean of as many draws.", ""]
        if r.get("discriminator_groups"):
            g = r["discriminator_groups"]
            md += ["What gives the set away: the discriminator's accuracy on each feature group alone "
                   f"(all groups together: {_fmt(r['headline']['discriminator']['value'])}; 0.5 = cannot tell):",
                   "", "| feature group | accuracy |", "|---|---:|"]
            md += [f"| {k} | {_fmt(v)} |" for k, v in sorted(g.items(), key=lambda kv: -kv[1])] + [""]
        nc = r.get("near_copies")
        if nc is not None:
            recs = ", ".join(f"{k} ({v})" for k, v in list(nc["by_record"].items())[:8]) or "none"
            md += [f"Near copies (the memorization headline): {nc['n']} of {r['n_windows']} windows lie closer to "
                   f"an LM-training segment than 99 % of unseen real windows do (embedding distance < "
                   f"{_fmt(nc['threshold'])}; 5-s segments from each beat, so a copy at any offset is found). "
                   f"Training records they sit next to (windows): {recs}.", ""]
            if nc["windows"]:
                md += ["| window | nearest training segment (start sample) | distance |", "|---|---|---:|"]
                md += [f"| {w['window']} | {w['train_window']} | {_fmt(w['distance'])} |"
                       for w in nc["windows"][:10]] + [""]
    keys = list(meanings)
    md += ["| row | n | " + " | ".join(keys) + " | verdict |", "|" + "---|" * (len(keys) + 3)]
    na = {"value": None, "verdict": "n/a"}
    for name, r in rows.items():
        hs = [r["headline"].get(k, na) for k in keys]
        cells = [f"{_fmt(h['value'])} {VERDICT_MARK[h['verdict']]}" if h["value"] is not None else "n/a"
                 for h in hs]
        md.append(
            f"| {name} | {r['n_windows']} | " + " | ".join(cells) + f" | {VERDICT_MARK[r['verdict']]} |"
        )
    return md + [""]


def fig_paper(scorer, primary: str | None, out: Path, n: int = 3) -> str | None:
    """Real DS2 strips beside strips of the primary set (or of the first scored row) on ECG paper."""
    from .ecgpaper import fig_ecg_paper

    name = primary if primary in scorer.sets else next(iter(scorer.sets), None)
    if name is None:
        return None
    s = scorer.sets[name]
    rng = np.random.default_rng(1)
    ref = scorer.reference
    i = rng.choice(len(ref), min(n, len(ref)), replace=False)
    j = rng.choice(len(s.windows), min(n, len(s.windows)), replace=False)
    fig_ecg_paper([ref.x[k] for k in i], [s.windows.x[k] for k in j], ref.fs, out / "paper.png",
                  [ref.names[k] for k in i], [s.windows.names[k] for k in j], "real DS2", name)
    return "paper.png"


def write_report(
    out: str | Path, metrics: dict, scorer, forecast: dict | None = None, command: str = ""
) -> Path:
    """Write figures, ``report.md`` and ``report.html`` into ``out``; returns the path of ``report.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    primary = metrics.get("primary_row")
    figs = {
        "paper": fig_paper(scorer, primary, out),
        "overlays": fig_overlays(scorer, primary, out),
        "hr": fig_hr(scorer, out),
        "embedding": fig_embedding(scorer, out),
    }
    if forecast is not None:
        figs["forecast"] = fig_forecast(forecast, out)
    rows = metrics["rows"]
    tab = _table(rows, TABLE_KEYS)
    ftab = _table(metrics["forecast_rows"], FORECAST_KEYS) if metrics.get("forecast_rows") else None
    emb = metrics["reference"]["embedding"]
    ref = metrics["reference"]
    defs = [(k, d, t) for k, (d, t) in METRICS.items()]
    md = [
        "# ecg2llm stage 3: synthetic ECG report",
        "",
        f"Command: `{command}`" if command else "",
        f"Synthetic set: `{metrics.get('synthetic_dir')}`"
        if metrics.get("synthetic_dir")
        else "No synthetic set: reference rows only.",
        f"Real reference: {ref['n_reference_windows']} random 10-s MLII windows of DS2 (seed "
        f"{ref['settings']['seed']}); memorization pool: every DS1 window at a "
        f"{ref['settings']['memo_stride_s']:g}-s hop.",
        f"Embedding: `{emb['path']}`, weights hash `{emb['weights_hash'][:16]}…`. "
        "Numbers are comparable only "
        f"under the same hash, reference and n.",
        "",
        *headline_tables(metrics),
        "## All metrics (detail)",
        "",
        _md_table(tab),
        "",
        "↓ lower is better, ↑ higher is better, →1 closest to 1 is best; n/a = undefined for that row "
        "(memorization of DS1 windows against DS1 itself).",
        "",
    ]
    if ftab:
        md += [
            "## Forecasting (5 s real DS2 prefix → 5 s continuation)",
            "",
            _md_table(ftab),
            "",
            "Naive baselines are deterministic point forecasts: their CRPS equals their MAE.",
        ]
        if "forecast" not in figs:
            md += [
                "No forecast file was given (`--forecast DIR` holding `forecast.npz`): naive baselines only, "
                "on tasks from `ecg2llm.tokenizer.forecasts.make_forecast_tasks`."
            ]
        md += [""]
    md += ["## Figures", ""]
    captions = {
        "paper": "Real and synthetic strips on ECG paper (25 mm/s, 10 mm/mV)",
        "overlays": "Real vs synthetic windows and median beats",
        "hr": "Heart-rate distributions",
        "embedding": "Embeddings, PCA of the real reference",
        "forecast": "Forecast fan chart",
    }
    for k, f in figs.items():
        if f:
            md += [f"### {captions[k]}", "", f"![{captions[k]}]({f})", ""]
    md += ["## Metric definitions", "", "| metric | better | definition |", "|---|---|---|"]
    md += [f"| `{k}` | {d} | {t} |" for k, d, t in defs]
    md += [
        "",
        "Goals (issue 5): rFED ≤ 2, disc ≤ 0.15, HR W1 ≤ 5 bpm, valid rhythm ≥ 95 %, "
        "memorization ratio ≥ 0.9.",
        "",
    ]
    text = "\n".join(md)
    write_text(out / "report.md", text)
    write_text(out / "report.html", _html(metrics, tab, ftab, figs, captions, defs, command))
    return out / "report.md"


def _html_table(tab) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in tab[0])
    b = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in tab[1:])
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


def _md_lines_html(lines: list[str]) -> str:
    """The headline markdown (headings, paragraphs, pipe tables) as simple HTML."""
    out, table = [], []

    def flush():
        if table:
            cells = [[c.strip().replace("**", "") for c in r.strip("|").split("|")] for r in table
                     if not set(r.replace("|", "").strip()) <= set("-:")]
            out.append(_html_table(cells))
            table.clear()

    for line in lines:
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.strip():
            out.append(f"<p>{html.escape(line.replace('**', ''))}</p>")
    flush()
    return "\n".join(out)


def _html(metrics, tab, ftab, figs, captions, defs, command) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>ecg2llm stage 3 report</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "td:first-child{text-align:left}"
        "img{max-width:100%}</style></head><body>",
        "<h1>ecg2llm stage 3: synthetic ECG report</h1>",
        f"<p>Command: <code>{html.escape(command)}</code></p>" if command else "",
        f"<p>Embedding weights hash <code>{metrics['reference']['embedding']['weights_hash']}</code></p>",
        _md_lines_html(headline_tables(metrics)),
        "<h2>All metrics (detail)</h2>",
        _html_table(tab),
    ]
    if ftab:
        parts += ["<h2>Forecasting</h2>", _html_table(ftab)]
    for k, f in figs.items():
        if f:
            parts += [f"<h3>{captions[k]}</h3><img src='{html.escape(f)}'>"]
    parts += ["<h2>Metric definitions</h2><table><tr><th>metric</th><th>better</th><th>definition</th></tr>"]
    parts += [
        f"<tr><td>{k}</td><td>{d}</td><td style='text-align:left'>{html.escape(t)}</td></tr>"
        for k, d, t in defs
    ]
    parts += ["</table></body></html>"]
    return "\n".join(parts)
