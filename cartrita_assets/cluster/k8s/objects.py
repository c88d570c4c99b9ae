"""Shared by every part of the cluster seam: the field manager, object types, names, events."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FIELD_MANAGER = "cartrita-assets"

Obj = dict[str, Any]
ObjList = list[dict[str, Any]]


def describe(kind: str, name: str, namespace: str | None) -> str:
    """``Kind namespace/name`` (or ``Kind name`` when cluster-scoped), for messages."""
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def _involved_name(event: Obj) -> str:
    return str((event.get("involvedObject") or {}).get("name") or "")


def _event_time(event: Obj) -> str:
    meta = event.get("metadata") or {}
    stamp = (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or meta.get("creationTimestamp")
        or ""
    )
    return str(stamp)[:19]  # seconds precision: eventTime has microseconds, the others not


def sort_events(events: Iterable[Obj]) -> ObjList:
    """Events ordered oldest first by their most recent timestamp.

    Args:
        events: core/v1 Event dicts.

    Returns:
        A new list, newest last.
    """
    return sorted(events, key=_event_time)
