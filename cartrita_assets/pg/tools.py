"""Run pg_dump / pg_restore with credentials in a 0600 passfile, never on the command line."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cartrita_assets.envfile import PostgresSettings
from cartrita_assets.pg.binaries import pg_binary
from cartrita_assets.redaction import redact, write_private_file


def _passfile_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


@contextlib.contextmanager
def passfile_env(settings: PostgresSettings, app_name: str) -> Iterator[dict[str, str]]:
    """Environment for a libpq tool: a temporary 0600 passfile in a 0700 folder, removed after."""
    with tempfile.TemporaryDirectory(prefix="cartrita-pg-") as tmp:
        path = Path(tmp) / "pgpass"
        line = ":".join(
            _passfile_field(v)
            for v in (settings.host, str(settings.port), "*", settings.user, settings.password)
        )
        write_private_file(path, line + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(
            PGPASSFILE=str(path),
            PGHOST=settings.host,
            PGPORT=str(settings.port),
            PGUSER=settings.user,
            PGAPPNAME=app_name,
            PGCONNECT_TIMEOUT="10",
        )
        if settings.sslmode:
            env["PGSSLMODE"] = settings.sslmode
        yield env


@dataclass
class ToolResult:
    """Exit code and (redacted) stderr lines of one tool run."""

    returncode: int
    stderr: list[str]


def run_tool(
    args: Sequence[str],
    settings: PostgresSettings,
    *,
    app_name: str,
    log: Callable[[str], None] = lambda _m: None,
    on_start: Callable[[subprocess.Popen[str]], None] | None = None,
    extra_env: dict[str, str] | None = None,
) -> ToolResult:
    """Run a PostgreSQL client program, streaming its stderr lines to ``log`` as progress.

    Args:
        args: program name (e.g. ``"pg_dump"``) and its arguments, with no credentials in them.
        settings: where to connect; the password goes to a passfile.
        app_name: ``application_name`` the server sees.
        log: receives each stderr line, with any secret removed.
        on_start: called with the running process (e.g. to wait for a snapshot to be taken).
        extra_env: additional environment (e.g. ``PGOPTIONS``).
    """
    with passfile_env(settings, app_name) as env:
        env.update(extra_env or {})
        proc = subprocess.Popen(
            [pg_binary(args[0]), *args[1:]],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        lines: list[str] = []
        reader = threading.Thread(target=_pump, args=(proc, lines, settings, log), daemon=True)
        reader.start()
        if on_start:
            on_start(proc)
        proc.wait()
        reader.join()
    return ToolResult(proc.returncode, lines)


def _pump(
    proc: subprocess.Popen[str],
    lines: list[str],
    settings: PostgresSettings,
    log: Callable[[str], None],
) -> None:
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = redact(raw.rstrip("\n"), [settings.password])
        lines.append(line)
        log(line)


@dataclass(frozen=True)
class TocEntry:
    """One line of ``pg_restore --list``."""

    dump_id: int
    kind: str
    schema: str
    name: str


TOC_KINDS = ("TABLE DATA", "SEQUENCE SET", "EXTENSION", "TABLE", "SEQUENCE", "INDEX")


_FINISHED_ITEM = re.compile(r"finished item (\d+) (.*)")


def finished_item(line: str) -> tuple[int, str] | None:
    """(dump id, what) of a parallel pg_dump's or pg_restore's ``--verbose`` line reporting an
    archive item done (``pg_restore: finished item 2902 TABLE DATA knowledge_entries`` ->
    ``(2902, "TABLE DATA knowledge_entries")``); None for any other line."""
    match = _FINISHED_ITEM.search(line)
    return (int(match[1]), match[2]) if match else None


def read_toc(dump_dir: Path, kinds: Sequence[str] = TOC_KINDS) -> list[TocEntry]:
    """Parse the archive's table of contents with ``pg_restore --list``.

    ``--list`` prints schema, name and owner separated by single spaces and unquoted, so a name
    that contains a space is ambiguous there; the exact names of such ``TABLE DATA`` and
    ``TABLE`` entries are read from the (quoted) SQL pg_restore emits for that one entry.
    ``kinds``: the entries to list (a ``CONSTRAINT`` entry's name is its table's, read from
    ``--list`` as it is).

    Raises:
        subprocess.CalledProcessError: the archive is unreadable.
    """
    out = subprocess.run(
        [pg_binary("pg_restore"), "--list", str(dump_dir)],
        capture_output=True, text=True, check=True, encoding="utf-8", errors="replace",
    )  # fmt: skip
    entries = []
    for line in out.stdout.splitlines():
        entry = _parse_toc_line(line, kinds)
        if entry is None:
            continue
        if entry.kind in _NAMED_BY_STATEMENT and _is_ambiguous(line, entry.kind):
            entry = _exact_names(dump_dir, entry)
        entries.append(entry)
    return entries


def _parse_toc_line(line: str, kinds: Sequence[str] = TOC_KINDS) -> TocEntry | None:
    # "3456; 1259 16390 TABLE DATA public users owner"
    if not line or line.startswith(";"):
        return None
    head, _, rest = line.partition("; ")
    parts = rest.split(" ", 2)
    if not head.isdigit() or len(parts) < 3:
        return None
    desc = parts[2]
    for kind in kinds:
        if desc.startswith(kind + " "):
            fields = desc[len(kind) + 1 :].split(" ")
            return TocEntry(int(head), kind, fields[0], fields[1] if len(fields) > 1 else "")
    return None


def _is_ambiguous(line: str, kind: str) -> bool:
    """True when a space in the schema, name or owner makes the split by spaces unreliable."""
    desc = line.partition("; ")[2].split(" ", 2)[2]
    return len(desc[len(kind) + 1 :].split(" ")) != 3  # schema, name, owner


_IDENT = r'"(?:[^"]|"")*"|[^\s".(]+'
_NAMED_BY_STATEMENT = {
    "TABLE DATA": re.compile(rf"COPY ({_IDENT})\.({_IDENT}) "),
    "TABLE": re.compile(rf"CREATE (?:UNLOGGED )?TABLE ({_IDENT})\.({_IDENT}) "),
}


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


def _exact_names(dump_dir: Path, entry: TocEntry) -> TocEntry:
    """``entry`` with schema and name read from pg_restore's SQL for that entry alone."""
    pattern = _NAMED_BY_STATEMENT[entry.kind]
    with tempfile.TemporaryDirectory(prefix="cartrita-toc-") as tmp:
        listfile = Path(tmp) / "entry.list"
        listfile.write_text(f"{entry.dump_id};\n")
        cmd = [pg_binary("pg_restore"), "--use-list", str(listfile), "--file=-", str(dump_dir)]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, encoding="utf-8",
            errors="replace",
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            for out in proc.stdout:  # the statement comes before the data: stop there
                match = pattern.match(out)
                if match:
                    return TocEntry(
                        entry.dump_id, entry.kind, _unquote(match[1]), _unquote(match[2])
                    )
        finally:
            proc.kill()
            proc.wait()
    return entry


def count_copy_rows(data_file: Path) -> int:
    """Rows in one uncompressed directory-format data file (see :class:`CopyRows`)."""
    counter = CopyRows()
    with data_file.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            counter.update(chunk)
    return counter.rows()


class CopyRows:
    """Counts the rows of a directory-format data file fed to it chunk by chunk.

    The file is COPY text (one line per row, newlines inside values escaped) ending with a
    ``\\.`` terminator line and blank lines; rows are the lines before a terminator in the last
    64 bytes (every line when there is none).
    """

    def __init__(self) -> None:
        self.lines = 0
        self.tail = b""

    def update(self, chunk: bytes) -> None:
        self.lines += chunk.count(b"\n")
        self.tail = chunk[-64:] if len(chunk) >= 64 else (self.tail + chunk)[-64:]

    def rows(self) -> int:
        marker = self.tail.rfind(b"\\.\n")
        return self.lines - (self.tail[marker:].count(b"\n") if marker >= 0 else 0)
