"""redis_copy against two real servers: the source a Redis 7 (as v1 runs it), the target the
bundled valkey-server (v2)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cartrita_assets import redis_copy as rc
from cartrita_assets.demo.redis_seed import seed_redis
from cartrita_assets.errors import BackupIntegrityError, PreflightError, RestoreError
from cartrita_assets.local.redis_servers import ServerBinary, bundled_server, system_redis7

# Every test but two shares the module's servers: the module runs on one pytest-xdist worker
# (support/groups.py says why the mark is written here).
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("test_redis_copy")]

PASSWORD = "s3cret-Pw_for-tests"
SECRET_VALUE = b"VALUE-THAT-MUST-NOT-LEAK"
DAY_MS = 86_400_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One redis-server on a free TCP port with requirepass, clients cached per db."""

    def __init__(self, workdir: Path, binary: ServerBinary) -> None:
        workdir.mkdir(parents=True)
        self.port = _free_port()
        conf = workdir / "redis.conf"
        conf.write_text(
            f'port {self.port}\nbind 127.0.0.1\nrequirepass {PASSWORD}\nsave ""\n'
            f"appendonly no\ndir {workdir}\ndatabases 16\nlogfile {workdir / 'redis.log'}\n"
        )
        conf.chmod(0o600)
        self.log = workdir / "redis.log"
        self.proc = subprocess.Popen([binary.argv0, str(conf)], executable=binary.path)
        self.clients: dict[int, redis.Redis] = {}

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while True:
            try:
                self.connect(0).ping()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = self.log.read_text() if self.log.exists() else ""
                    raise RuntimeError(f"redis-server did not start: {log[-2000:]}") from None
                time.sleep(0.05)

    def connect(self, db: int) -> redis.Redis:
        if db not in self.clients:
            self.clients[db] = redis.Redis(
                host="127.0.0.1", port=self.port, password=PASSWORD, db=db
            )
        return self.clients[db]

    def stop(self) -> None:
        for client in self.clients.values():
            client.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[tuple[Server, Server]]:
    base = tmp_path_factory.mktemp("redis_copy")
    redis7 = system_redis7()
    if redis7 is None:
        pytest.skip("no Redis 7 on this machine (scripts/bootstrap.sh installs Debian's)")
    started: list[Server] = []
    try:
        for name, binary in (("source", redis7), ("target", bundled_server())):
            started.append(Server(base / name, binary))
            started[-1].wait_ready()
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def pair(servers) -> tuple[Server, Server]:
    for server in servers:
        server.connect(0).flushall()
        server.connect(0).config_set("maxmemory", 0)
    return servers


# ---------------------------------------------------------------------------- fixtures' data

BIN_KEY = b"\xff\xfe\x00bin\x80key"
BIN_VALUE = bytes(range(256))
ZSCORES = {b"neg": -2.5, b"frac": 0.1, b"zero": 0.0, b"big": 1e300, b"pinf": float("inf")}
ZSCORES[b"\xffninf"] = float("-inf")


def _populate(src: Server) -> None:
    r0, r3 = src.connect(0), src.connect(3)
    r0.set(BIN_KEY, BIN_VALUE)
    r0.set(b"empty", b"")
    r0.set(b"with-ttl", b"v", px=DAY_MS)
    r0.rpush(b"biglist", *[f"item-{i}".encode() for i in range(20_000)])
    r0.rpush(b"duplist", b"a", b"a", b"\x00", b"a")
    r0.hset(b"bighash", mapping={f"f{i}".encode(): bytes([i % 256]) * 3 for i in range(5_000)})
    r0.hset(b"hash-bin", mapping={b"\xff": b"", b"": b"\x00\x01"})
    r0.pexpire(b"hash-bin", 3 * DAY_MS)
    r0.sadd(b"set", b"x", b"\x00", b"\xff\xfe", b"")
    r0.zadd(b"zset", ZSCORES)
    r0.execute_command("XADD", b"stream", b"1-1", b"f", b"1", b"f", b"dup", b"\xff", b"\x00")
    r0.execute_command("XADD", b"stream", b"2-0", b"g", b"2")
    r0.execute_command("XADD", b"stream", b"5-3", b"h", b"3")
    r0.execute_command("XDEL", b"stream", b"5-3")  # last-generated-id stays 5-3
    r0.execute_command("XADD", b"emptystream", b"7-7", b"a", b"b")
    r0.execute_command("XDEL", b"emptystream", b"7-7")
    r3.set(b"db3-string", b"three")
    r3.rpush(b"db3-list", b"a", b"b")
    r3.pexpire(b"db3-list", 2 * DAY_MS)


EXPECTED_KEYS = {
    0: {
        BIN_KEY,
        b"empty",
        b"with-ttl",
        b"biglist",
        b"duplist",
        b"bighash",
        b"hash-bin",
        b"set",
        b"zset",
        b"stream",
        b"emptystream",
    },
    3: {b"db3-string", b"db3-list"},
}


def _by_key(records: list[rc.KeyRecord]) -> dict[tuple[int, bytes], rc.KeyRecord]:
    return {(r.db, r.key): r for r in records}


# ---------------------------------------------------------------------------- tests


def test_databases_in_use(pair):
    src, _ = pair
    assert rc.databases_in_use(src.connect(0)) == []
    _populate(src)
    assert rc.databases_in_use(src.connect(0)) == [0, 3]


def test_read_keyspace_values(pair):
    src, _ = pair
    _populate(src)
    records = _by_key(list(rc.read_keyspace(src.connect, batch=97)))
    assert {db for db, _ in records} == {0, 3}
    for db, keys in EXPECTED_KEYS.items():
        assert {k for d, k in records if d == db} == keys
    assert records[(0, BIN_KEY)].value == BIN_VALUE
    assert records[(0, b"empty")] == rc.KeyRecord(0, b"empty", "string", b"", None)
    assert records[(0, b"biglist")].value == [f"item-{i}".encode() for i in range(20_000)]
    assert records[(0, b"duplist")].value == [b"a", b"a", b"\x00", b"a"]
    assert len(records[(0, b"bighash")].value) == 5_000
    assert records[(0, b"hash-bin")].value == [(b"", b"\x00\x01"), (b"\xff", b"")]
    assert records[(0, b"set")].value == sorted([b"x", b"\x00", b"\xff\xfe", b""])
    assert records[(0, b"zset")].value == sorted(ZSCORES.items())
    stream = records[(0, b"stream")]
    assert stream.value == [
        (b"1-1", [(b"f", b"1"), (b"f", b"dup"), (b"\xff", b"\x00")]),
        (b"2-0", [(b"g", b"2")]),
    ]
    assert stream.stream_last_id == b"5-3"
    assert records[(0, b"emptystream")].value == []
    assert records[(0, b"emptystream")].stream_last_id == b"7-7"
    now = int(time.time() * 1000)
    assert abs(records[(0, b"with-ttl")].expire_at_ms - (now + DAY_MS)) < 2000
    assert abs(records[(3, b"db3-list")].expire_at_ms - (now + 2 * DAY_MS)) < 2000
    assert records[(3, b"db3-string")].expire_at_ms is None


def test_round_trip_through_backup(pair, tmp_path):
    src, dst = pair
    _populate(src)
    records = list(rc.read_keyspace(src.connect))
    path = tmp_path / "redis.jsonl"
    summary = rc.write_backup(path, rc.read_keyspace(src.connect))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert summary == rc.BackupSummary(
        keys_per_db={0: 11, 3: 2},
        total_keys=13,
        keys_with_ttl=3,
        digest=rc.keyspace_digest(records),
    )
    assert sorted(rc.read_backup(path), key=lambda r: (r.db, r.key)) == sorted(
        records, key=lambda r: (r.db, r.key)
    )
    assert rc.verify_backup(path) == summary

    restored = rc.restore_keyspace(dst.connect, rc.read_backup(path), batch=50)
    assert restored == rc.RestoreSummary(
        restored=13,
        expired_before_restore=0,
        per_db={0: 11, 3: 2},
        paths={0: "logical", 3: "logical"},
    )
    copy = list(rc.read_keyspace(dst.connect))
    assert rc.keyspace_digest(copy) == summary.digest
    by_key = _by_key(copy)
    for rec in records:
        got = by_key[(rec.db, rec.key)]
        assert got.value == rec.value
        assert got.stream_last_id == rec.stream_last_id
        if rec.expire_at_ms is None:
            assert got.expire_at_ms is None
        else:
            assert abs(got.expire_at_ms - rec.expire_at_ms) <= 100
    diff = rc.compare_keyspace(dst.connect, rc.read_backup(path))
    assert diff.ok() and diff.compared == 13 and diff.extra_count == 0, diff.describe()

    # Direct checks on the target with plain commands.
    t0 = dst.connect(0)
    assert t0.get(BIN_KEY) == BIN_VALUE
    assert t0.get(b"empty") == b""
    assert t0.llen(b"biglist") == 20_000 and t0.lindex(b"biglist", -1) == b"item-19999"
    assert t0.zscore(b"zset", b"pinf") == float("inf")
    assert t0.zscore(b"zset", b"\xffninf") == float("-inf")
    assert t0.zscore(b"zset", b"frac") == 0.1
    assert t0.execute_command("TYPE", b"emptystream") == b"stream"
    assert t0.xinfo_stream(b"stream")["last-generated-id"] == b"5-3"
    assert t0.xinfo_stream(b"emptystream")["groups"] == 0
    assert t0.xinfo_stream(b"emptystream")["last-generated-id"] == b"7-7"


def test_stream_keeps_last_id_for_new_entries(pair):
    src, dst = pair
    _populate(src)
    rc.restore_keyspace(dst.connect, rc.read_keyspace(src.connect))
    with pytest.raises(redis.ResponseError, match="equal or smaller"):
        dst.connect(0).execute_command("XADD", b"stream", b"5-3", b"n", b"1")


def test_already_expired_record_is_skipped(pair):
    _, dst = pair
    now = int(time.time() * 1000)
    records = [
        rc.KeyRecord(0, b"gone", "string", b"old", now - 1_000),
        rc.KeyRecord(0, b"kept", "string", b"new", now + DAY_MS),
        rc.KeyRecord(2, b"plain", "set", [b"a"], None),
    ]
    summary = rc.restore_keyspace(dst.connect, records)
    assert summary == rc.RestoreSummary(restored=2, expired_before_restore=1, per_db={0: 1, 2: 1})
    assert dst.connect(0).exists(b"gone") == 0
    assert dst.connect(0).get(b"kept") == b"new"
    assert abs(dst.connect(0).pttl(b"kept") - DAY_MS) < 2000
    diff = rc.compare_keyspace(dst.connect, records)
    assert diff.ok() and diff.compared == 2 and diff.expired_skipped == 1, diff.describe()


def test_restore_is_idempotent_and_converges(pair):
    src, dst = pair
    _populate(src)
    records = list(rc.read_keyspace(src.connect))
    rc.restore_keyspace(dst.connect, records)
    t0 = dst.connect(0)
    t0.rpush(b"duplist", b"stray")
    t0.hset(b"hash-bin", b"stray", b"x")
    t0.persist(b"with-ttl")
    t0.set(b"set", b"now a string")
    again = rc.restore_keyspace(dst.connect, records)
    assert again.restored == 13
    assert t0.lrange(b"duplist", 0, -1) == [b"a", b"a", b"\x00", b"a"]
    assert t0.llen(b"biglist") == 20_000
    assert rc.keyspace_digest(rc.read_keyspace(dst.connect)) == rc.keyspace_digest(records)
    diff = rc.compare_keyspace(dst.connect, records)
    assert diff.ok() and diff.extra_count == 0, diff.describe()


def test_compare_detects_each_kind_of_difference(pair):
    src, dst = pair
    _populate(src)
    records = list(rc.read_keyspace(src.connect))
    now = int(time.time() * 1000)
    expired = rc.KeyRecord(0, b"expired-in-backup", "string", b"x", now - 10)
    rc.restore_keyspace(dst.connect, records)
    t0, t3 = dst.connect(0), dst.connect(3)
    t0.delete(b"duplist")
    t0.zadd(b"zset", {b"frac": 0.2})
    t0.pexpire(b"with-ttl", 2 * DAY_MS)
    t3.persist(b"db3-list")
    t3.set(b"\x00extra" + b"x" * 200, b"y")
    diff = rc.compare_keyspace(dst.connect, [*records, expired])
    assert not diff.ok()
    assert diff.missing == ["db0:b'duplist'"] and diff.missing_count == 1
    assert diff.different == ["db0:b'zset'"] and diff.different_count == 1
    assert diff.ttl_mismatch == ["db0:b'with-ttl'", "db3:b'db3-list'"]
    extra_label = rc.key_label(3, b"\x00extra" + b"x" * 200)
    assert diff.extra == [extra_label] and len(extra_label) == len("db3:") + 80
    assert extra_label.endswith("...")
    assert diff.compared == 13 and diff.expired_skipped == 1
    assert "1 missing (db0:b'duplist')" in diff.describe()


def test_compare_caps_lists_but_counts_all(pair):
    _, dst = pair
    records = [rc.KeyRecord(1, f"k{i:02}".encode(), "string", b"v", None) for i in range(25)]
    diff = rc.compare_keyspace(dst.connect, records)
    assert diff.missing_count == 25 and len(diff.missing) == 20
    assert diff.missing[0] == "db1:b'k00'" and not diff.ok()


def test_ttl_within_tolerance_is_accepted(pair):
    _, dst = pair
    now = int(time.time() * 1000)
    rec = rc.KeyRecord(0, b"k", "string", b"v", now + DAY_MS)
    rc.restore_keyspace(dst.connect, [rec])
    shifted = rc.KeyRecord(0, b"k", "string", b"v", now + DAY_MS + 1_500)
    assert rc.compare_keyspace(dst.connect, [shifted], ttl_tolerance_ms=2_000).ok()
    assert not rc.compare_keyspace(dst.connect, [shifted], ttl_tolerance_ms=1_000).ok()


def _queues(src: Server) -> None:
    """Streams as workers leave them (the demo's), plus the plain keys of _populate."""
    seed_redis(src.connect(0), 2, 7)
    _populate(src)


@pytest.mark.parametrize("path", ["dump", "logical"])
def test_streams_with_groups_arrive_exactly(pair, tmp_path, path):
    src, dst = pair
    _queues(src)
    backup = tmp_path / "redis.jsonl"
    rc.write_backup(backup, rc.read_keyspace(src.connect, with_dump=True))
    summary = rc.restore_keyspace(dst.connect, rc.read_backup(backup), path=path)
    assert set(summary.paths.values()) == {path}
    diff = rc.compare_keyspace(dst.connect, rc.read_backup(backup))
    assert diff.ok() and diff.extra_count == 0, diff.describe()
    events = {g["name"]: g for g in dst.connect(0).xinfo_groups(b"stream:events")}
    assert events == {g["name"]: g for g in src.connect(0).xinfo_groups(b"stream:events")}
    for key in (b"stream:events", b"stream:audit"):
        for group in events if key == b"stream:events" else [b"archiver"]:
            assert _pending(dst, key, group) == _pending(src, key, group)
    info = dst.connect(0).xinfo_stream(b"stream:audit")
    assert (
        info["max-deleted-entry-id"]
        == src.connect(0).xinfo_stream(b"stream:audit")["max-deleted-entry-id"]
    )
    assert info["entries-added"] == 20
    assert dst.connect(1).xinfo_groups(b"stream:jobs:webhooks")[0]["name"] == b"dispatchers"


def _pending(server: Server, key: bytes, group: bytes) -> list[tuple[bytes, bytes, int]]:
    rows = server.connect(0).xpending_range(key, group, min="-", max="+", count=1000)
    return [(r["message_id"], r["consumer"], r["times_delivered"]) for r in rows]


def test_auto_takes_dump_where_the_target_loads_it(pair):
    src, dst = pair
    _queues(src)
    records = list(rc.read_keyspace(src.connect, with_dump=True))
    assert rc.restore_keyspace(dst.connect, records).paths == {0: "dump", 1: "dump", 3: "dump"}
    # the other way (valkey's RDB 80 into Redis 7.0's RDB 10) the target refuses the payloads
    back = list(rc.read_keyspace(dst.connect, with_dump=True))
    src.connect(0).flushall()
    assert rc.restore_keyspace(src.connect, back).paths == {
        0: "logical",
        1: "logical",
        3: "logical",
    }
    assert rc.compare_keyspace(src.connect, back).ok()
    with pytest.raises(RestoreError, match="RDB version 80"):
        rc.restore_keyspace(src.connect, back, path="dump")


def test_one_changed_pending_entry_fails_the_comparison(pair):
    src, dst = pair
    _queues(src)
    records = list(rc.read_keyspace(src.connect, with_dump=True))
    rc.restore_keyspace(dst.connect, records)
    first = _pending(dst, b"stream:events", b"notifier")[0]
    dst.connect(0).xclaim(b"stream:events", b"notifier", b"worker-1", 0, [first[0]])
    diff = rc.compare_keyspace(dst.connect, records)
    assert not diff.ok() and diff.different == ["db0:b'stream:events'"], diff.describe()


def test_format_1_backup_still_reads_and_restores(pair, tmp_path):
    src, dst = pair
    _populate(src)
    legacy = [r.legacy() for r in rc.read_keyspace(src.connect)]
    path = tmp_path / "v1.jsonl"
    rc.write_backup(path, legacy)
    text = path.read_text().replace('"version": 2', '"version": 1', 1)
    path.write_text(text)
    assert rc.verify_backup(path).total_keys == 13
    rc.restore_keyspace(dst.connect, rc.read_backup(path))
    assert rc.compare_keyspace(dst.connect, rc.read_backup(path)).ok()


def test_module_type_is_refused():
    # A real module type needs the module loaded; the dispatch is what read_keyspace calls.
    with pytest.raises(PreflightError, match="'ReJSON-RL', which is not supported") as info:
        rc._read_value(None, 0, b"doc:1", "ReJSON-RL", 10)  # type: ignore[arg-type]
    assert "db0:b'doc:1'" in str(info.value)
    with pytest.raises(PreflightError, match="not supported"):
        rc.restore_keyspace(lambda db: None, [rc.KeyRecord(0, b"k", "ReJSON-RL", b"{}", None)], 0)  # type: ignore[arg-type,return-value]


def test_decoding_client_is_refused(pair):
    src, _ = pair
    src.connect(0).set(b"k", b"v")

    def decoding(db):
        return redis.Redis(
            host="127.0.0.1", port=src.port, password=PASSWORD, db=db, decode_responses=True
        )

    with pytest.raises(PreflightError, match="decode_responses=False"):
        list(rc.read_keyspace(decoding))


def test_restore_error_names_keys_not_values(pair):
    _, dst = pair
    dst.connect(0).config_set("maxmemory", 1)  # noeviction: every write is refused (OOM)
    records = [rc.KeyRecord(0, b"big-key", "string", SECRET_VALUE, None)]
    with pytest.raises(RestoreError) as info:
        rc.restore_keyspace(dst.connect, records)
    message = str(info.value)
    assert "db0:b'big-key'" in message and "OutOfMemoryError" in message
    assert "maxmemory" in message
    assert SECRET_VALUE.decode() not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_backup_detects_truncation_and_edits(pair, tmp_path):
    src, _ = pair
    _populate(src)
    path = tmp_path / "b.jsonl"
    rc.write_backup(path, rc.read_keyspace(src.connect))
    lines = path.read_text().splitlines(keepends=True)
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text("".join(lines[:-2]))
    with pytest.raises(BackupIntegrityError, match="truncated"):
        rc.verify_backup(truncated)
    edited = tmp_path / "edited.jsonl"
    edited.write_text("".join(lines[:2] + lines[3:]))
    with pytest.raises(BackupIntegrityError, match="does not match its trailer"):
        rc.verify_backup(edited)
    with pytest.raises(BackupIntegrityError, match="header"):
        rc.verify_backup(_write(tmp_path / "other.jsonl", "{}\n"))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_failed_backup_leaves_no_file(pair, tmp_path):
    path = tmp_path / "b.jsonl"

    def records():
        yield rc.KeyRecord(0, b"k", "string", b"v", None)
        raise PreflightError("stop")

    with pytest.raises(PreflightError):
        rc.write_backup(path, records())
    assert list(tmp_path.iterdir()) == []


def test_keys_that_vanish_are_skipped(pair):
    src, _ = pair
    client = src.connect(0)
    client.set(b"here", b"v")
    assert rc._read_meta(client, [b"gone", b"here"], False)[0][:2] == (b"here", "string")
    assert len(rc._read_meta(client, [b"gone", b"here"], False)) == 1
    assert rc._read_strings(client, [b"gone"]) == {b"gone": None}
    for type_name in ("hash", "set", "zset", "list", "stream"):
        assert rc._read_value(client, 0, b"gone", type_name, 10) is None


def test_digest_is_unambiguous_and_order_independent():
    a = rc.KeyRecord(0, b"k", "hash", [(b"ab", b"c")], None)
    b = rc.KeyRecord(0, b"k", "hash", [(b"a", b"bc")], None)
    assert a.digest() != b.digest()
    s1 = rc.KeyRecord(0, b"k", "set", [b"x", b"y"], None)
    s2 = rc.KeyRecord(0, b"k", "set", [b"y", b"x"], 5)
    assert s1.digest() == s2.digest()
    assert rc.KeyRecord(1, b"k", "set", [b"x", b"y"], None).digest() != s1.digest()
    assert rc.keyspace_digest([a, s1]) == rc.keyspace_digest([s1, a])
    list_ab = rc.KeyRecord(0, b"k", "list", [b"a", b"b"], None)
    assert list_ab.digest() != rc.KeyRecord(0, b"k", "list", [b"b", b"a"], None).digest()
