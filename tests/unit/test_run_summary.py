"""The CLI's run summary of a real in-process run: a failed WARN check reads WARN (neither a
failure nor hidden), a failed ERROR check FAILED."""

from __future__ import annotations

import json

import dagster as dg

from cartrita_assets.cli.summary import RunSummary


@dg.asset
def table() -> int:
    return 1


@dg.asset_check(asset=table)
def rows_are_right() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@dg.asset_check(asset=table)
def vectors_look_fine() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN)


@dg.asset_check(asset=table)
def content_matches() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR)


def _summary(*checks: dg.AssetChecksDefinition) -> RunSummary:
    defs = dg.Definitions(assets=[table], asset_checks=list(checks))
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(raise_on_error=False)
    return RunSummary.from_result(result)


def test_a_failed_warn_check_reads_warn_and_a_failed_error_check_failed(tmp_path):
    summary = _summary(rows_are_right, vectors_look_fine, content_matches)
    page = summary.markdown()
    assert "| table | rows_are_right | passed |" in page
    assert "| table | vectors_look_fine | WARN |" in page
    assert "| table | content_matches | FAILED |" in page
    assert "1 WARN check(s) failed: data to look at" in page
    written = json.loads((summary.write(tmp_path).parent / "summary.json").read_text())
    assert {c["check"]: (c["passed"], c["severity"]) for c in written["checks"]} == {
        "rows_are_right": (True, "ERROR"),
        "vectors_look_fine": (False, "WARN"),
        "content_matches": (False, "ERROR"),
    }


def test_without_a_failed_warn_check_no_warning_line():
    page = _summary(rows_are_right).markdown()
    assert "| table | rows_are_right | passed |" in page and "WARN" not in page
