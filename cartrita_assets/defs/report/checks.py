"""The blocking check that ends the forward migration."""

import json
from pathlib import Path

import dagster as dg

from cartrita_assets.defs.facts import latest_metadata
from cartrita_assets.defs.report.assets import integration_report


@dg.asset_check(asset=integration_report, blocking=True)
def integration_suite_passes(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    """Every case of the integration suite passed (read back from the report.json written)."""
    meta = latest_metadata(context.instance, "integration_report")
    if meta is None:
        return dg.AssetCheckResult(passed=False, metadata={"problem": "no report yet"})
    folder = Path(str(meta["report_dir"]))
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
