"""One backup line: a KeyRecord as a JSON object (bytes base64, scores as ``repr``) and back.

Format 2 adds a stream's state (``stream``: counters, groups, consumers, pending entries) and the
key's ``DUMP`` payload (``dump``); format 1 lines have neither and still read.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cartrita_assets.errors import BackupIntegrityError
from cartrita_assets.redis_copy.records import SUPPORTED_TYPES, KeyRecord, _unsupported_type
from cartrita_assets.redis_copy.stream_codec import decode_state, encode_state


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _encode_value(type_name: str, value: Any) -> object:
    if type_name == "string":
        return _b64(value)
    if type_name in ("list", "set"):
        return [_b64(item) for item in value]
    if type_name == "hash":
        return [[_b64(f), _b64(v)] for f, v in value]
    if type_name == "zset":
        return [[_b64(m), repr(float(s))] for m, s in value]
    return [[_b64(i), [[_b64(f), _b64(v)] for f, v in fields]] for i, fields in value]


def _decode_value(type_name: str, value: Any) -> object:
    if type_name == "string":
        return _unb64(value)
    if type_name in ("list", "set"):
        return [_unb64(item) for item in value]
    if type_name == "hash":
        return [(_unb64(f), _unb64(v)) for f, v in value]
    if type_name == "zset":
        return [(_unb64(m), float(s)) for m, s in value]
    return [(_unb64(i), [(_unb64(f), _unb64(v)) for f, v in fields]) for i, fields in value]


def _record_line(rec: KeyRecord) -> str:
    if rec.type not in SUPPORTED_TYPES:
        raise _unsupported_type(rec.db, rec.key, rec.type)
    obj: dict[str, object] = {
        "db": rec.db,
        "key": _b64(rec.key),
        "type": rec.type,
        "value": _encode_value(rec.type, rec.value),
        "expire_at_ms": rec.expire_at_ms,
    }
    if rec.stream_last_id is not None:
        obj["stream_last_id"] = _b64(rec.stream_last_id)
    if rec.stream is not None:
        obj["stream"] = encode_state(rec.stream)
    if rec.dump is not None:
        obj["dump"] = _b64(rec.dump)
    return json.dumps(obj, separators=(",", ":")) + "\n"


def _record_from(path: Path, number: int, obj: dict[str, Any]) -> KeyRecord:
    try:
        type_name = obj["type"]
        if type_name not in SUPPORTED_TYPES:
            raise ValueError(type_name)
        last_id = obj.get("stream_last_id")
        state = obj.get("stream")
        dump = obj.get("dump")
        return KeyRecord(
            db=int(obj["db"]),
            key=_unb64(obj["key"]),
            type=type_name,
            value=_decode_value(type_name, obj["value"]),
            expire_at_ms=None if obj["expire_at_ms"] is None else int(obj["expire_at_ms"]),
            stream_last_id=None if last_id is None else _unb64(last_id),
            stream=None if state is None else decode_state(state),
            dump=None if dump is None else _unb64(dump),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise BackupIntegrityError(
            f"Redis backup {path} line {number} is not a valid record ({type(exc).__name__})."
        ) from None
