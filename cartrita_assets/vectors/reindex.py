"""When to re-embed and when to rebuild an index: the re-index sensors' decisions, without servers.

``stale_run`` turns the pending source changes into the ids a re-embed run compares (or a skip
reason); ``rebuild_plan`` compares each model's row count and index kind with what its index was
built on and what a rebuild was last requested for. The sensors only read v2 and wrap these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cartrita_assets.vectors.changes import PendingChanges
from cartrita_assets.vectors.indexing import DRIFT_FACTOR


@dataclass(frozen=True)
class StaleRun:
    """A re-embed run: ``source_ids`` None compares every row; ``what`` summarizes it."""

    source_ids: dict[str, list[str]] | None
    what: str


def read_stale_cursor(raw: str | None) -> tuple[int, int | None]:
    """(watermark transaction id, last change id seen) of the stale sensor's cursor."""
    try:
        data = json.loads(raw) if raw else {}
        return int(data.get("after_xact", 0)), data.get("last_id")
    except (ValueError, TypeError, AttributeError):
        return 0, None


def nothing_changed(pending: PendingChanges, seen: str) -> str:
    """The skip reason when no source row changed since ``seen``."""
    waiting = (
        f"; {pending.waiting} newer changes wait for an older transaction still running"
        if pending.waiting
        else ""
    )
    return f"no source row changed since {seen}{waiting}"


def _source_name(source: dict[str, object]) -> str:
    table = str(source["table"])
    return table if source["schema_name"] == "public" else f"{source['schema_name']}.{table}"


def stale_run(pending: PendingChanges, sources: list[dict[str, object]] | None) -> StaleRun | str:
    """The run ``pending`` changes ask for, or why none: every changed id of a table
    embeddings_index still embeds (``sources`` None: all tables), or every row when too many."""
    if pending.ids is None:
        return StaleRun(None, f"{pending.distinct} changed rows: every row compared")
    known = {_source_name(s) for s in sources or []}
    ids = {n: v for n, v in pending.ids.items() if sources is None or n in known}
    if not ids:
        return (
            f"{pending.rows} changes (ids {pending.first_id}-{pending.last_id}) are all of "
            f"tables embeddings_index no longer embeds ({', '.join(pending.ids)})"
        )
    return StaleRun(ids, ", ".join(f"{n}: {len(v)}" for n, v in ids.items()))


def within(rows: int, reference: int) -> bool:
    """Whether ``rows`` is within DRIFT_FACTOR of ``reference`` either way."""
    return reference / DRIFT_FACTOR <= rows <= reference * DRIFT_FACTOR


@dataclass(frozen=True)
class ModelIndex:
    """One model's index: ``kind_now`` built on ``at_build`` rows; ``rows`` now; ``chosen`` is the
    kind the volume rule picks for ``rows``."""

    model: str
    kind_now: str
    at_build: int
    rows: int
    chosen: str


@dataclass
class RebuildPlan:
    """Models to rebuild (model -> why), the lines about the others, and the next cursor."""

    rebuild: dict[str, str] = field(default_factory=dict)
    fine: list[str] = field(default_factory=list)
    cursor: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_acted(raw: str | None) -> dict[str, dict[str, Any]]:
    """The index sensor's cursor: model -> the rows and kind a rebuild was last requested for."""
    try:
        acted = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return acted if isinstance(acted, dict) else {}


def _why_rebuild(index: ModelIndex) -> str | None:
    if index.chosen != index.kind_now:
        return f"the rule now picks {index.chosen} instead of {index.kind_now}"
    if index.kind_now != "exact" and index.at_build and not within(index.rows, index.at_build):
        moved = f"{index.rows} rows moved more than {DRIFT_FACTOR:g}x"
        return f"{moved} from {index.at_build} at its build"
    return None


def rebuild_plan(models: list[ModelIndex], acted: dict[str, dict[str, Any]]) -> RebuildPlan:
    """Which indexes to rebuild: the rule picks another kind, or the rows moved DRIFT_FACTOR from
    the build; not again while a rebuild was already requested for about the same rows."""
    plan = RebuildPlan()
    for m in models:
        why = _why_rebuild(m)
        if why is None:
            plan.fine.append(
                f"{m.model}: {m.rows} rows, {m.kind_now} (built on {m.at_build}), within "
                f"{DRIFT_FACTOR:g}x and the rule still picks {m.chosen}"
            )
            continue
        before = acted.get(m.model)
        if before and before.get("kind") == m.chosen and within(m.rows, int(before.get("rows", 0))):
            plan.cursor[m.model] = before
            plan.fine.append(
                f"{m.model}: {m.rows} rows, rebuild already requested at {before['rows']}"
            )
            continue
        plan.rebuild[m.model] = why
        plan.cursor[m.model] = {"rows": m.rows, "kind": m.chosen}
    return plan
