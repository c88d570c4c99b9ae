"""The blocking check that ends the forward migration."""

import json
from pathlib import Path

import dagster as dg

from cartrita_assets.defs.report.assets import integration_report


@dg.asset_check(asset=integration_report, blocking=True)
def integration_suite_passes(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    """Every case of the integration suite passed (read back from the report.json written)."""
    event = context.instance.get_latest_materialization_event(integration_report.key)
    if event is None or event.asset_materialization is None:
        return dg.AssetCheckResult(passed=False, metadata={"problem": "no report yet"})
    folder = Path(str(event.asset_materialization.metadata["report_dir"].value))
    report = json.loads((folder / "report.json").read_text())
    failed = [
        f"{c['suite']}/{c['name']}: {c['detail']}" for c in report["cases"] if not c["passed"]
    ]
    return dg.AssetCheckResult(
        passed=bool(report["cases"]) and not failed,
        metadata={
            "cases": len(report["cases"]),
            "failed": len(failed),
            "failures": "\n".join(failed) or "none",
            "report": dg.MetadataValue.path(str(folder / "report.md")),
        },
    )
