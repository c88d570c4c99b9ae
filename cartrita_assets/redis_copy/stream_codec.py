"""A stream's state (counters, groups, consumers, pending entries) as JSON and back."""

from __future__ import annotations

import base64
from typing import Any

from cartrita_assets.redis_copy.streams import ConsumerGroup, PendingEntry, StreamState


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _opt_b64(data: bytes | None) -> str | None:
    return None if data is None else _b64(data)


def _opt_unb64(text: str | None) -> bytes | None:
    return None if text is None else _unb64(text)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def encode_state(state: StreamState) -> dict[str, object]:
    """JSON-ready form of a stream's state (bytes base64)."""
    return {
        "last_id": _b64(state.last_id),
        "entries_added": state.entries_added,
        "max_deleted_id": _opt_b64(state.max_deleted_id),
        "groups": [_encode_group(g) for g in state.groups],
    }


def _encode_group(group: ConsumerGroup) -> dict[str, object]:
    return {
        "name": _b64(group.name),
        "last_delivered_id": _b64(group.last_delivered_id),
        "entries_read": group.entries_read,
        "consumers": [_b64(c) for c in group.consumers],
        "pending": [
            [_b64(p.id), _b64(p.consumer), p.delivery_count, p.delivered_at_ms]
            for p in group.pending
        ],
    }


def decode_state(obj: dict[str, Any]) -> StreamState:
    """The inverse of :func:`encode_state` (raises KeyError/ValueError/TypeError when bad)."""
    return StreamState(
        last_id=_unb64(obj["last_id"]),
        entries_added=_opt_int(obj["entries_added"]),
        max_deleted_id=_opt_unb64(obj["max_deleted_id"]),
        groups=tuple(_decode_group(g) for g in obj["groups"]),
    )


def _decode_group(obj: dict[str, Any]) -> ConsumerGroup:
    return ConsumerGroup(
        name=_unb64(obj["name"]),
        last_delivered_id=_unb64(obj["last_delivered_id"]),
        entries_read=_opt_int(obj["entries_read"]),
        consumers=tuple(_unb64(c) for c in obj["consumers"]),
        pending=tuple(
            PendingEntry(_unb64(i), _unb64(c), int(n), int(t)) for i, c, n, t in obj["pending"]
        ),
    )
