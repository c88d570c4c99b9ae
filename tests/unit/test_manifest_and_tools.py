"""Manifest verification, dump parsing and secret helpers (no servers)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from cartrita_assets.backup.manifest import (
    DUMP_NAME,
    EarlyChecksums,
    Manifest,
    PostgresPart,
    checksum_tree,
    file_facts,
    verify_files,
    verify_files_and_rows,
)
from cartrita_assets.pg.inventory import SequenceState, TableState
from cartrita_assets.pg.roles import scram_verifier
from cartrita_assets.pg.tools import CopyRows, _parse_toc_line, count_copy_rows
from cartrita_assets.redaction import fingerprint, redact, write_private_file


def _manifest(folder: Path) -> Manifest:
    part = PostgresPart(
        server_version="18.6", major=18, database="cartrita", owner="cartrita", encoding="UTF8",
        collate="C", size_bytes=1, extensions={}, roles={},
        tables={"public.users": TableState(3, "42")},
        sequences={"public.users_id_seq": SequenceState(3, True)},
        snapshot="x", pg_dump_version="18.6", files=checksum_tree(folder / DUMP_NAME, folder),
    )  # fmt: skip
    return Manifest("b1", "now", {"kind": "demo"}, part, None)


def _dump(tmp_path: Path) -> Path:
    dump = tmp_path / DUMP_NAME
    dump.mkdir()
    (dump / "toc.dat").write_bytes(b"toc")
    (dump / "3001.dat").write_bytes(b"1\ta\n2\tb\\nc\n3\t\\N\n\\.\n\n\n")
    return dump


def test_intact_backup_has_no_problems(tmp_path):
    _dump(tmp_path)
    assert verify_files(tmp_path, _manifest(tmp_path)) == []


def test_changed_missing_and_extra_files_are_each_reported(tmp_path):
    dump = _dump(tmp_path)
    manifest = _manifest(tmp_path)
    (dump / "3001.dat").write_bytes(b"1\ta\n\\.\n")
    (dump / "toc.dat").unlink()
    (dump / "9999.dat").write_bytes(b"")
    problems = verify_files(tmp_path, manifest)
    assert problems == [
        "postgres.dump/3001.dat: sha256 differs from the manifest",
        "postgres.dump/toc.dat: missing",
        "postgres.dump/9999.dat: not in the manifest",
    ]


def test_manifest_round_trips(tmp_path):
    _dump(tmp_path)
    manifest = _manifest(tmp_path)
    path = manifest.save(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Manifest.load(tmp_path) == manifest


def test_manifest_keeps_the_snapshot_horizon_and_loads_one_written_before_it(tmp_path):
    _dump(tmp_path)
    manifest = _manifest(tmp_path)
    manifest.postgres.snapshot_xmin = 2**32 + 745
    manifest.save(tmp_path)
    assert Manifest.load(tmp_path).postgres.snapshot_xmin == 2**32 + 745
    older = json.loads((tmp_path / "manifest.json").read_text())
    del older["postgres"]["snapshot_xmin"]  # as manifests were written before the horizon
    assert Manifest.from_dict(older).postgres.snapshot_xmin is None


def test_checksums_of_many_files_in_parallel_equal_one_by_one(tmp_path):
    dump = _dump(tmp_path)
    for i in range(40):
        (dump / f"{4000 + i}.dat").write_bytes(os.urandom(1000 + 977 * i))
    sums = checksum_tree(dump, tmp_path)
    assert len(sums) == 42
    for rel, digest in sums.items():
        assert digest == hashlib.sha256((tmp_path / rel).read_bytes()).hexdigest()


def test_copy_rows_counts_lines_before_the_terminator(tmp_path):
    dump = _dump(tmp_path)
    assert count_copy_rows(dump / "3001.dat") == 3
    empty = dump / "3002.dat"
    empty.write_bytes(b"\\.\n\n\n")
    assert count_copy_rows(empty) == 0


def test_rows_counted_chunk_by_chunk_equal_one_read_wherever_the_chunks_split():
    data = b"1\ta\\nb\n2\tc\n3\t\\.\n\\.\n\n\n"  # an escaped newline and a "\\." inside a value
    for size in range(1, len(data) + 1):
        counter = CopyRows()
        for start in range(0, len(data), size):
            counter.update(data[start : start + size])
        assert counter.rows() == 3, size


def test_sha256_and_rows_from_one_read_equal_the_separate_passes(tmp_path):
    dump = _dump(tmp_path)
    big = dump / "3003.dat"
    rows = (b"%d\t%s\n" % (i, os.urandom(40).hex().encode()) for i in range(40_000))
    big.write_bytes(b"".join(rows) + b"\\.\n\n")
    for path in (dump / "3001.dat", big):
        facts = file_facts(path)
        assert facts.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert facts.copy_rows == count_copy_rows(path)
    assert file_facts(big).copy_rows == 40_000
    manifest = _manifest(tmp_path)
    manifest.postgres.files["postgres.dump/3003.dat"] = file_facts(big).sha256
    problems, rows = verify_files_and_rows(tmp_path, manifest)
    assert problems == [] and rows["postgres.dump/3003.dat"] == 40_000
    assert rows["postgres.dump/3001.dat"] == 3
    big.write_bytes(big.read_bytes().replace(b"\n", b"\n0\tx\n", 1))
    problems, rows = verify_files_and_rows(tmp_path, manifest)
    assert problems == ["postgres.dump/3003.dat: sha256 differs from the manifest"]
    assert rows["postgres.dump/3003.dat"] == 40_001


def test_checksums_taken_while_files_are_written_equal_the_tree_read_after(tmp_path):
    dump = _dump(tmp_path)
    early = EarlyChecksums(dump, tmp_path)
    early.done(dump / "3001.dat")  # finished: hashed at once, in the background
    (dump / "3002.dat").write_bytes(b"1\n\\.\n")
    early.done(dump / "3002.dat")
    early.done(dump / "3999.dat")  # reported but never written: skipped, no error
    early.pool.shutdown(wait=True)  # let the background hashing finish before the change below
    (dump / "3002.dat").write_bytes(b"1\n2\n\\.\n")  # changed after it was hashed
    (dump / "3003.dat").write_bytes(b"never reported\n")  # not handed over
    assert early.tree() == checksum_tree(dump, tmp_path)
    assert set(early.sums) == {dump / "3001.dat", dump / "3002.dat"}


def test_toc_lines_are_parsed():
    entry = _parse_toc_line("2907; 0 16833 TABLE DATA public audit_log cartrita")
    assert entry is not None and (entry.dump_id, entry.kind, entry.schema, entry.name) == (
        2907, "TABLE DATA", "public", "audit_log",
    )  # fmt: skip
    assert _parse_toc_line(";  Archive created at") is None


def test_scram_verifier_has_postgres_format_and_random_salt():
    a, b = scram_verifier("s3cret"), scram_verifier("s3cret")
    assert a.startswith("SCRAM-SHA-256$4096:") and a != b
    assert "s3cret" not in a


def test_redact_and_fingerprint():
    assert redact("user:pw123@host pw123", ["pw123", None, ""]) == "user:***@host ***"
    assert fingerprint("abc") == "sha256:" + hashlib.sha256(b"abc").hexdigest()[:12]


def test_private_files_are_created_0600(tmp_path):
    old = os.umask(0)
    try:
        path = write_private_file(tmp_path / "secret", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
