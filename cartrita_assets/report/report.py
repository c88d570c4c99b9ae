"""report.json, report.md and latency.svg for one integration suite run."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

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
        "chart": folder / "latency.svg",
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
    lines += ["", "![search latency](latency.svg)", ""]
    return "\n".join(lines)


# The chart's geometry (SVG user units = pixels): plot area, and one row per search kind.
_WIDTH, _LEFT, _RIGHT, _TOP, _ROW, _BOTTOM = 720, 170, 30, 40, 70, 50


def latency_chart(result: SuiteResult, path: Path) -> None:
    """A box plot of each search kind's latencies as SVG: the box from p25 to p75 with the median,
    whiskers to the furthest values within 1.5 IQR, the values beyond as dots, and p50/p95 in the
    label. Written with the standard library: no plotting package to import on every run."""
    kinds = [k for k in result.latencies_ms if result.latencies_ms[k]]
    height = _TOP + _ROW * max(1, len(kinds)) + _BOTTOM
    top_ms = max((max(result.latencies_ms[k]) for k in kinds), default=1.0) or 1.0
    plot = _WIDTH - _LEFT - _RIGHT

    def x(ms: float) -> float:
        return round(_LEFT + plot * ms / top_ms, 1)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{_WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{_WIDTH / 2}" y="22" text-anchor="middle" font-size="13">'
        "v2 search latency (integration suite)</text>",
    ]
    axis_y = _TOP + _ROW * max(1, len(kinds))
    for tick in _ticks(top_ms):
        parts.append(f'<line x1="{x(tick)}" y1="{_TOP}" x2="{x(tick)}" y2="{axis_y}" '
                     'stroke="#ddd"/>')  # fmt: skip
        parts.append(f'<text x="{x(tick)}" y="{axis_y + 15}" text-anchor="middle">{tick:g}</text>')
    parts.append(f'<text x="{_LEFT + plot / 2}" y="{axis_y + 35}" text-anchor="middle">'
                 "latency (ms)</text>")  # fmt: skip
    if not kinds:
        parts.append(f'<text x="{_LEFT + plot / 2}" y="{_TOP + _ROW / 2}" text-anchor="middle">'
                     "no searches ran</text>")  # fmt: skip
    for row, kind in enumerate(kinds):
        parts += _box(kind, result, x, _TOP + _ROW * row + _ROW / 2)
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def _box(kind: str, result: SuiteResult, x: Callable[[float], float], mid: float) -> list[str]:
    values = np.asarray(result.latencies_ms[kind], dtype=float)
    q1, median, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
    reach = 1.5 * (q3 - q1)
    inside = values[(values >= q1 - reach) & (values <= q3 + reach)]
    low, high = float(inside.min()), float(inside.max())
    p50, p95 = result.percentiles(kind)
    label = [escape(kind), f"p50 {p50:.2f} ms", f"p95 {p95:.2f} ms"]
    out = [
        f'<text x="{_LEFT - 10}" y="{mid - 12 + 13 * i}" text-anchor="end">{text}</text>'
        for i, text in enumerate(label)
    ]
    out += [
        f'<line x1="{x(low)}" y1="{mid}" x2="{x(q1)}" y2="{mid}" stroke="black"/>',
        f'<line x1="{x(q3)}" y1="{mid}" x2="{x(high)}" y2="{mid}" stroke="black"/>',
        f'<line x1="{x(low)}" y1="{mid - 8}" x2="{x(low)}" y2="{mid + 8}" stroke="black"/>',
        f'<line x1="{x(high)}" y1="{mid - 8}" x2="{x(high)}" y2="{mid + 8}" stroke="black"/>',
        f'<rect class="box" x="{x(q1)}" y="{mid - 15}" width="{round(x(q3) - x(q1), 1)}" '
        f'height="30" fill="#cfe2f3" stroke="black"/>',
        f'<line x1="{x(median)}" y1="{mid - 15}" x2="{x(median)}" y2="{mid + 15}" '
        'stroke="#e69138" stroke-width="2"/>',
    ]
    out += [
        f'<circle cx="{x(float(v))}" cy="{mid}" r="3" fill="none" stroke="black"/>'
        for v in values[(values < low) | (values > high)]
    ]
    return out


def _ticks(top: float) -> list[float]:
    """About five round values from 0 to ``top``."""
    raw = top / 5
    magnitude = 10 ** np.floor(np.log10(raw))
    step = float(min(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))
    return [round(step * i, 10) for i in range(int(top // step) + 1)]
