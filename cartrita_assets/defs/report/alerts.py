"""Alerts: every failed asset check and failed step of a finished run, where an operator sees it.

Two run status sensors watch every job of this code location (forward, rollback, reindex, the
health checks, and materializations launched from the UI): check_failure_alert_sensor the runs
that succeeded (a non-blocking check can fail in a successful run), run_failure_alert_sensor the
runs that failed. For each failure they

- log one line in the sensor's log (error, or warning for a WARN-severity check);
- append one JSON line to ``<state>/alerts/alerts.jsonl`` (folder 0700, file 0600; the state
  folder is ``$CARTRITA_STATE_DIR`` or ``.cartrita``);
- when ``CARTRITA_ALERT_WEBHOOK_URL`` is set (http or https), POST
  ``{"text": <summary>, "alerts": [<the same JSON objects>]}`` to it once per run (5 s timeout;
  a failed POST is logged, never raised).

A JSON line holds only: time, job name, run id, run status, kind (``check_failed``,
``step_failed``, ``run_failed``), asset and check names (or the step key and the error's class
name) and, for a check, its problems text (its ``problems`` metadata, else ``details`` or
``summary``: names and counts, never connection details). Error messages, which the run's own log
shows, are not copied out.
"""

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from cartrita_assets.environments import ALERT_WEBHOOK_ENV, setting, state_dir
from cartrita_assets.redaction import private_dir

WEBHOOK_ENV = ALERT_WEBHOOK_ENV
WEBHOOK_TIMEOUT = 5
PROBLEM_KEYS = ("problems", "details", "summary")
MAX_PROBLEMS = 2000


def alerts_file() -> Path:
    """``<state>/alerts/alerts.jsonl``."""
    return state_dir() / "alerts" / "alerts.jsonl"


def run_failures(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[dict[str, Any]]:
    """One alert per failed check evaluation and failed step of ``run`` (and one for a failed
    run that has neither)."""
    base = {
        "job": run.job_name,
        "run_id": run.run_id,
        "run_status": run.status.value,
    }
    alerts: list[dict[str, Any]] = []
    records = instance.all_logs(
        run.run_id,
        of_type={
            dg.DagsterEventType.ASSET_CHECK_EVALUATION,
            dg.DagsterEventType.STEP_FAILURE,
        },
    )
    for record in records:
        event = record.dagster_event
        if event is None:
            continue
        data = event.event_specific_data
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            if data.passed:  # type: ignore[union-attr]
                continue
            alerts.append(
                {
                    **base,
                    "kind": "check_failed",
                    "asset": data.asset_key.to_user_string(),  # type: ignore[union-attr]
                    "check": data.check_name,  # type: ignore[union-attr]
                    "severity": data.severity.value,  # type: ignore[union-attr]
                    "problems": _problems(data.metadata),  # type: ignore[union-attr]
                }
            )
        else:
            error = getattr(data, "error", None)
            alerts.append(
                {
                    **base,
                    "kind": "step_failed",
                    "step": event.step_key,
                    "error": getattr(error, "cls_name", None) or "unknown",
                    "_message": _first_line(getattr(error, "message", "")),
                }
            )
    if not alerts and run.status == dg.DagsterRunStatus.FAILURE:
        alerts.append({**base, "kind": "run_failed"})
    return alerts


def _problems(metadata: dict[str, Any]) -> str:
    for key in PROBLEM_KEYS:
        value = getattr(metadata.get(key), "value", None)
        if isinstance(value, str) and value.strip():
            return value.strip()[:MAX_PROBLEMS]
    return ""


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:300] if lines else ""


def report_run(context: dg.RunStatusSensorContext, run: dg.DagsterRun) -> list[dict[str, Any]]:
    """Log, append and (optionally) POST the failures of ``run``; returns the alerts written."""
    alerts = run_failures(context.instance, run)
    if not alerts:
        return []
    at = datetime.now(UTC).isoformat(timespec="seconds")
    lines = []
    for alert in alerts:
        message = alert.pop("_message", "")
        alert["at"] = at
        _log(context, alert, message)
        lines.append(json.dumps(alert, sort_keys=True))
    _append(alerts_file(), lines)
    url = setting(WEBHOOK_ENV)
    if url:
        _post(context, url, {"text": _summary(run, alerts), "alerts": alerts})
    return alerts


def _log(context: dg.RunStatusSensorContext, alert: dict[str, Any], message: str) -> None:
    where = f"{alert['job']} run {alert['run_id'][:8]}"
    if alert["kind"] == "check_failed":
        text = f"{where}: check {alert['asset']}/{alert['check']} failed"
        text += f": {alert['problems']}" if alert["problems"] else ""
        warn = alert["severity"] == "WARN"
        (context.log.warning if warn else context.log.error)(text)
    elif alert["kind"] == "step_failed":
        context.log.error(f"{where}: step {alert['step']} failed ({message or alert['error']})")
    else:
        context.log.error(f"{where} failed (no step or check failure recorded)")


def _append(path: Path, lines: list[str]) -> None:
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, "".join(line + "\n" for line in lines).encode())
    finally:
        os.close(fd)


def _summary(run: dg.DagsterRun, alerts: list[dict[str, Any]]) -> str:
    parts = [
        f"{a['asset']}/{a['check']}" if a["kind"] == "check_failed" else a.get("step", "run")
        for a in alerts
    ]
    return f"Cartrita: {run.job_name} run {run.run_id[:8]}: {len(alerts)} failed: " + ", ".join(
        str(p) for p in parts
    )


def _post(context: dg.RunStatusSensorContext, url: str, payload: dict[str, Any]) -> None:
    """POST ``payload``; never raises, never logs the URL (it may hold a token)."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        context.log.warning(f"{WEBHOOK_ENV} is not an http(s) URL: alert not posted.")
        return
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "cartrita-assets-alerts"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
            response.read(1024)
    except urllib.error.HTTPError as exc:
        context.log.warning(f"The alert webhook answered HTTP {exc.code}: alert not delivered.")
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        context.log.warning(f"The alert webhook could not be reached ({reason}).")


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="check_failure_alert_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "After every successful run of this code location's jobs: each failed asset check (a "
        "non-blocking check can fail in a successful run) logged, appended as a JSON line to "
        "<state>/alerts/alerts.jsonl and POSTed to CARTRITA_ALERT_WEBHOOK_URL when set."
    ),
)
def check_failure_alert_sensor(context: dg.RunStatusSensorContext) -> dg.SkipReason | None:
    if not report_run(context, context.dagster_run):
        return dg.SkipReason(f"run {context.dagster_run.run_id[:8]}: no check failed")
    return None


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "After every failed run of this code location's jobs: each failed step and failed asset "
        "check logged, appended as a JSON line to <state>/alerts/alerts.jsonl and POSTed to "
        "CARTRITA_ALERT_WEBHOOK_URL when set."
    ),
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext) -> None:
    report_run(context, context.dagster_run)
