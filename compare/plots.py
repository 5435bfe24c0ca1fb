"""The comparison's two pictures, drawn with matplotlib into small PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLOURS = {
    "taskflow-jobs": "#1b7837",
    "supabase-poll": "#2166ac",
    "supabase-cron": "#92c5de",
    "cloudflare": "#f4a582",
}


def _pyplot() -> Any:
    # deferred: matplotlib loads in a second; only drawing needs it, and the Agg backend
    # must be chosen before pyplot is imported
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_cdf(results: dict[str, Any], path: Path) -> None:
    """Share of emails delivered within x seconds of the signup, one line per design."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4), dpi=80)
    for name, series in results["series"].items():
        quantiles = series["latency_quantiles_s"]
        if not quantiles:
            continue
        share = results["figures"][name]["delivered"] / results["figures"][name]["signups"]
        ys = [share * i / (len(quantiles) - 1) for i in range(len(quantiles))]
        ax.plot([max(q, 1e-3) for q in quantiles], ys, label=_label(results, name),
                color=COLOURS.get(name), linewidth=2)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("seconds from signup to the provider accepting the email (log scale)")
    ax.set_ylabel("share of the 10,000 signups")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Delivery latency (10 % provider errors, a 30 s outage, a crash)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def delivered_over_time(results: dict[str, Any], path: Path) -> None:
    """First deliveries per second since the first signup, with the outage shaded."""
    plt = _pyplot()
    workload = results["workload"]
    fig, ax = plt.subplots(figsize=(7.5, 4), dpi=80)
    ax.axvspan(*workload["outage"], color="#d73027", alpha=0.12, label="provider outage")
    if workload.get("crash_at") is not None:
        ax.axvline(workload["crash_at"], color="#555555", linestyle=":", label="consumer crash")
    horizon = 0
    for name, series in results["series"].items():
        per_s = series["delivered_per_s"]
        smooth = [sum(per_s[max(0, i - 4) : i + 1]) / min(5, i + 1) for i in range(len(per_s))]
        ax.plot(range(len(smooth)), smooth, label=_label(results, name),
                color=COLOURS.get(name), linewidth=1.6)  # fmt: skip
        horizon = max(horizon, len(smooth))
    ax.set_xlim(0, min(horizon, 420))
    ax.set_xlabel("seconds since the first signup (signups at 100/s until 100 s)")
    ax.set_ylabel("emails delivered per second (5 s mean)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Delivered over time, across the outage and the crash", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _label(results: dict[str, Any], name: str) -> str:
    return results["figures"][name]["label"]
