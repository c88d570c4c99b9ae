"""A human-readable summary of one job run: what materialized and how every check ended."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg


def check_result(check: dict[str, object]) -> str:
    """``passed``; ``WARN`` for a failed check of WARN severity (it reports data to look at and
    never fails the run); ``FAILED`` for a failed ERROR check."""
    if check["passed"]:
        return "passed"
    return "WARN" if check["severity"] == dg.AssetCheckSeverity.WARN.value else "FAILED"


@dataclass
class RunSummary:
    """Materializations and check results of one run."""

    job: str
    run_id: str
    success: bool
    materialized: dict[str, dict[str, str]] = field(default_factory=dict)
    checks: list[dict[str, object]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @classmethod
    def from_result(cls, result: dg.ExecuteInProcessResult) -> RunSummary:
        summary = cls(result.job_def.name, result.run_id, result.success)
        for event in result.all_events:
            summary._add(event)
        return summary

    def _add(self, event: dg.DagsterEvent) -> None:
        kind = event.event_type_value
        if kind == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization  # type: ignore[union-attr]
            meta = {k: str(v.value) for k, v in mat.metadata.items() if k != "table_rows"}
            self.materialized[mat.asset_key.to_user_string()] = meta
        elif kind == "ASSET_CHECK_EVALUATION":
            ev = event.event_specific_data
            self.checks.append(
                {
                    "asset": ev.asset_key.to_user_string(),  # type: ignore[union-attr]
                    "check": ev.check_name,  # type: ignore[union-attr]
                    "passed": ev.passed,  # type: ignore[union-attr]
                    "severity": ev.severity.value,  # type: ignore[union-attr]
                }
            )
        elif kind == "STEP_FAILURE":
            error = event.event_specific_data.error  # type: ignore[union-attr]
            self.failures.append(f"{event.step_key}: {error.message.strip()}")

    def markdown(self) -> str:
        """The summary as a short markdown page."""
        lines = [
            f"# {self.job} run {self.run_id}",
            "",
            f"Result: {'SUCCESS' if self.success else 'FAILED'}",
            "",
        ]
        lines += ["## Assets", ""] + [
            f"- **{name}**: {meta.get('v1_source') or meta.get('action') or 'materialized'}"
            for name, meta in self.materialized.items()
        ]
        lines += ["", "## Checks", "", "| asset | check | result |", "|---|---|---|"]
        lines += [f"| {c['asset']} | {c['check']} | {check_result(c)} |" for c in self.checks]
        warnings = sum(check_result(c) == "WARN" for c in self.checks)
        if warnings:
            lines += [
                "",
                f"{warnings} WARN check(s) failed: data to look at (see their metadata in the "
                "run), not a failed migration.",
            ]
        if self.failures:
            lines += ["", "## Failures", ""] + [f"- {f}" for f in self.failures]
        return "\n".join(lines) + "\n"

    def write(self, root: Path) -> Path:
        """Write ``summary.md`` and ``summary.json`` under ``root/<timestamp>/``; returns the md."""
        folder = root / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "summary.json").write_text(json.dumps(self.__dict__, indent=2) + "\n")
        path = folder / "summary.md"
        path.write_text(self.markdown())
        return path
