"""report.json, report.md and latency.png for one integration suite run."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from cartrita_assets.report.suite import SuiteResult


def new_report_dir(root: Path, run_id: str) -> Path:
    """``<root>/<UTC timestamp>-<run id prefix>``, created."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = root / f"{stamp}-{run_id[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_report(folder: Path, result: SuiteResult, about: dict[str, str]) -> dict[str, Path]:
    """Write the three files; returns their paths."""
    data = {"generated_at": dt.datetime.now(dt.UTC).isoformat(), **about, **result.as_dict()}
    paths = {
        "json": folder / "report.json",
        "markdown": folder / "report.md",
        "chart": folder / "latency.png",
    }
    paths["json"].write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    paths["markdown"].write_text(markdown(result, about))
    latency_chart(result, paths["chart"])
    return paths


def markdown(result: SuiteResult, about: dict[str, str]) -> str:
    lines = [
        "# v2 integration report",
        "",
        *(f"- **{k}**: {v}" for k, v in about.items()),
        f"- **result**: {'PASSED' if result.passed else 'FAILED'} "
        f"({len(result.cases) - len(result.failed)}/{len(result.cases)} cases)",
        "",
        "| suite | case | result | ms | detail |",
        "|---|---|---|---|---|",
    ]
    for c in result.cases:
        detail = c.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {c.suite} | {c.name} | {'pass' if c.passed else 'FAIL'} | {c.ms:.1f} | {detail} |"
        )
    lines += [
        "",
        "## Search latency",
        "",
        "| search | p50 ms | p95 ms | samples |",
        "|---|---|---|---|",
    ]
    for kind, values in result.latencies_ms.items():
        p50, p95 = result.percentiles(kind)
        lines.append(f"| {kind} | {p50:.2f} | {p95:.2f} | {len(values)} |")
    if result.recall_at_10 is not None:
        lines += ["", f"Recall@10 against an exact scan (worst model): {result.recall_at_10:.4f}"
                  f" (95% lower bound {result.recall_at_10_lower_bound or 0:.4f})"]  # fmt: skip
    lines += ["", "![search latency](latency.png)", ""]
    return "\n".join(lines)


def latency_chart(result: SuiteResult, path: Path) -> None:
    """A box plot of each search kind's latencies, p50 and p95 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(result.latencies_ms)
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    try:
        if kinds:
            ax.boxplot([result.latencies_ms[k] for k in kinds], vert=False, showfliers=True)
            labels = []
            for kind in kinds:
                p50, p95 = result.percentiles(kind)
                labels.append(f"{kind}\np50 {p50:.2f} ms\np95 {p95:.2f} ms")
            ax.set_yticks(range(1, len(kinds) + 1), labels, fontsize=8)
        else:
            ax.text(0.5, 0.5, "no searches ran", ha="center", va="center")
        ax.set_xlabel("latency (ms)")
        ax.set_title("v2 search latency (integration suite)")
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
