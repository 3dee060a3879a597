"""What ``scripts/bench.py`` writes: the machine it ran on, the results table and the scaling projection."""
from __future__ import annotations

import os
import platform
from datetime import datetime, timezone


def machine() -> dict:
    """CPU model, cores, memory, GPU and library versions of this machine."""
    import torch

    from ecg2llm.core.distributed import available_cores
    from ecg2llm.core.io import git_sha, versions

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "cores_available": available_cores(), "memory_gb": mem_gb,
            "gpu": gpu, "gpu_count": torch.cuda.device_count() if gpu else 0, "platform": platform.platform(),
            "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "git_sha": git_sha(),
            "versions": versions()}


def _fmt(v: float | None) -> str:
    if v is None:
        return ""
    a = abs(v)
    return f"{v:,.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 0.1 else f"{v:.3g}"


def _duration(seconds: float) -> str:
    for unit, n in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= n:
            return f"{seconds / n:,.1f} {unit}"
    return f"{seconds:.1f} s"


def scaling(report: dict, corpus_hours: float) -> list[dict]:
    """Per stage and device: ECG-hours handled per wall-clock hour, wall seconds per ECG-hour, and wall time
    for ``corpus_hours`` of single-lead ECG on the measured hardware (throughput measured, linear scaling)."""
    out = []
    for res in report["stages"]:
        for r in res.get("rows", []):
            if r.get("scale") and r.get("ecg_s_per_s"):
                rate = r["ecg_s_per_s"]  # ECG-seconds per second = ECG-hours per hour
                out.append({"stage": r["scale"], "device": res["device"], "ecg_hours_per_hour": rate,
                            "seconds_per_ecg_hour": 3600.0 / rate, "corpus_wall_s": corpus_hours * 3600.0 / rate})
    return out


def markdown(report: dict) -> str:
    """``bench.md``: provenance lines, the results table, the scaling table."""
    m, c = report["machine"], report["corpus"]
    gpu = f"{m['gpu']} x {m['gpu_count']}" if m["gpu"] else "none"
    v = m["versions"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores_available']} cores available ({m['cpu_count']} online), "
        f"{m['memory_gb']} GiB RAM, GPU: {gpu}; torch {v.get('torch')}, {report['threads']} torch threads, "
        f"OMP_WAIT_POLICY {report.get('omp_wait_policy')}; "
        f"load average {report['load_average_before'][0]:.2f} before, {report['load_average_after'][0]:.2f} after.",
        f"Command: `{report['command']}`; date {m['date_utc']}; git {m['git_sha']}"
        + ("; **--quick (smoke sizes, not the figures of record)**" if report["quick"] else "") + ".",
        "",
        "| stage | device | metric | value | unit | target | met | peak RSS MB | GPU peak MB |",
        "|---|---|---|---:|---|---|---|---:|---:|",
    ]
    for res in report["stages"]:
        mem = _fmt(res.get("peak_rss_mb"))
        gmem = _fmt(res.get("gpu_peak_mb"))
        if res.get("error"):
            lines.append(f"| {res['stage']} | {res['device']} | **failed**: {res['error'][:160]} | | | | | {mem} | |")
            continue
        for r in res["rows"]:
            met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
            lines.append(f"| {res['stage']} | {res['device']} | {r['metric']} | {_fmt(r['value'])} | {r['unit']} | "
                         f"{r['target'] or ''} | {met} | {mem} | {gmem} |")
    sc = report.get("scaling", [])
    if sc:
        lines += [
            "",
            f"Scaling: {c['patients']:,} patients x {c['hours_per_patient']:g} h x {c['leads']} lead(s) = "
            f"{c['hours']:,.0f} ECG-hours, on the hardware above, throughput taken as measured (linear in data):",
            "",
            "| stage | device | ECG-hours per hour | seconds per ECG-hour | corpus wall time |",
            "|---|---|---:|---:|---:|",
        ]
        for s in sc:
            lines.append(f"| {s['stage']} | {s['device']} | {_fmt(s['ecg_hours_per_hour'])} | "
                         f"{_fmt(s['seconds_per_ecg_hour'])} | {_duration(s['corpus_wall_s'])} |")
    return "\n".join(lines) + "\n"
