"""Hostile input: names and data in v1, arguments of the v2 search functions, v1 .env files.

a. Tables, schemas and columns named with quotes, spaces, dots, SQL and mixed case, text from
   every Unicode plane with control characters, bidi marks, combining marks and a ZWJ emoji,
   and an untyped vector column of mixed dimensions: copied exactly by a forward run.
b. SQL injection in every text argument of the search functions and upsert_embedding (bound
   parameters), and out-of-range numbers: correct results or an error naming the argument.
c. Broken v1 .env files through the ``cartrita forward`` entry point.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from support.demo import v1_source
from support.nothing_lost import forward
from support.ports import free_port
from support.runs import check_results, failure_messages

from cartrita_assets.backup.manifest import Manifest
from cartrita_assets.local.postgres import LocalPostgres
from cartrita_assets.paths import data_path
from cartrita_assets.pg import inventory
from cartrita_assets.pg.connect import connect
from cartrita_assets.pg.tools import _is_ambiguous
from cartrita_assets.rollback.steps import backup_reference, compare_v1
from cartrita_assets.schema import MigrationRunner

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

# --------------------------------------------------------------------------------------------------
# a. Hostile names and data in v1
# --------------------------------------------------------------------------------------------------

# U+0041, U+00E9, U+4E2D (BMP), U+1F600 (plane 1), U+20000 (2), U+30000 (3), U+E0001 (14),
# U+F0000 (15), U+10FFFD (16): every plane PostgreSQL's UTF8 accepts.
PLANES = "\u0041\u00e9\u4e2d\U0001f600\U00020000\U00030000\U000e0001\U000f0000\U0010fffd"
CONTROLS = "".join(chr(c) for c in range(0x01, 0x20)) + "\x7f"  # U+0000 cannot be stored
BIDI = "\u200f\u202e\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627\u202c\u200e"
COMBINING = "e\u0301 a\u0308\u0323 Z\u0351\u0352\u0353\u0354"
ZWJ_EMOJI = "\U0001f469\u200d\U0001f4bb"  # woman technologist, alone
COPY_SPECIALS = "\\.\n\\N\t\r\\\\ end"  # COPY's end marker, its NULL, escapes, line breaks

TABLE = 'Weird "Quoted" Table'
COLUMNS = ("select", "Order", "col with space", "ÜnïcødeCol", "vec")
SCHEMA = 'Hostile "Schema". ñ; DROP SCHEMA public CASCADE; --'
SCHEMA_TABLE = "Tab le.x; --"
# naively joined with "." both would be "hostile.ns.t": the manifest must keep them apart
COLLIDING = (("hostile.ns", "t"), ("hostile", "ns.t"))


def _vector(dims: int, rng: random.Random) -> str:
    return "[" + ",".join(repr(round(rng.uniform(-1, 1), 6)) for _ in range(dims)) + "]"


def _create_hostile_objects(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """The hostile tables in v1 (as its superuser); returns (schema, table, order-by column)."""
    rng = random.Random(7)
    table = sql.Identifier("public", TABLE)
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), {} text, {} integer, "
            "{} text, {} text, {} vector)"
        ).format(table, *map(sql.Identifier, COLUMNS))
    )
    everything = PLANES + CONTROLS + BIDI + COMBINING + ZWJ_EMOJI + COPY_SPECIALS
    rows = [
        (PLANES, 1, CONTROLS, BIDI, _vector(3, rng)),
        (COMBINING, 2, ZWJ_EMOJI, COPY_SPECIALS, _vector(5, rng)),
        (everything, -(2**31), "", "'; DROP TABLE users; --", _vector(1536, rng)),
        (None, None, None, None, None),
        (ZWJ_EMOJI * 3, 2**31 - 1, "x" * 10_000, PLANES[::-1], "[0,-0,1e-30,3.4e+38]"),
    ]
    insert = sql.SQL("INSERT INTO {} ({}) VALUES (%s, %s, %s, %s, %s::vector)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    )
    with conn.cursor() as cur:
        cur.executemany(insert, rows)

    schema_table = sql.Identifier(SCHEMA, SCHEMA_TABLE)
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
    conn.execute(
        sql.SQL('CREATE TABLE {} (n bigserial PRIMARY KEY, "from" text, {} text)').format(
            schema_table, sql.Identifier("ÜnïcødeCol")
        )
    )
    conn.execute(
        sql.SQL('INSERT INTO {} ("from", {}) VALUES (%s, %s), (%s, %s), (NULL, %s)').format(
            schema_table, sql.Identifier("ÜnïcødeCol")
        ),
        (PLANES, BIDI, CONTROLS, COMBINING, ZWJ_EMOJI),
    )
    for i, (schema, name) in enumerate(COLLIDING):
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        ident = sql.Identifier(schema, name)
        conn.execute(sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, v text)").format(ident))
        conn.execute(sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(ident), (i, f"{i}{PLANES}"))
    return [("public", TABLE, "id"), (SCHEMA, SCHEMA_TABLE, "n")] + [
        (schema, name, "id") for schema, name in COLLIDING
    ]


def _read_table(settings, schema: str, table: str, key: str) -> tuple[list[str], list[tuple]]:
    with connect(settings, role="test", read_only=True) as conn:
        cur = conn.execute(
            sql.SQL("SELECT * FROM {} ORDER BY {}").format(
                sql.Identifier(schema, table), sql.Identifier(key)
            )
        )
        return [c.name for c in cur.description or []], cur.fetchall()


def test_hostile_names_and_data_are_copied_exactly(resources, own_v1, instance):
    resources = {**resources, "v1": v1_source(own_v1)}
    v1 = resources["v1"].settings().postgres  # the demo's POSTGRES_USER, a superuser
    with connect(v1, role="test") as conn:
        tables = _create_hostile_objects(conn)
        # NUL (U+0000) is a documented limitation of PostgreSQL text, refused by v1 itself
        with pytest.raises(psycopg.Error) as nul:
            conn.execute(
                sql.SQL("INSERT INTO {} ({}) VALUES (chr(0))").format(
                    sql.Identifier("public", TABLE), sql.Identifier("select")
                )
            )
        assert nul.value.sqlstate == "54000", nul.value  # "null character not permitted"

    result = forward(resources, instance)

    assert result.success, failure_messages(result)
    checks = check_results(result)
    assert checks and all(checks.values()), checks
    v2 = resources["v2"].admin("cartrita")
    for schema, table, key in tables:
        v1_columns, v1_rows = _read_table(v1, schema, table, key)
        v2_columns, v2_rows = _read_table(v2, schema, table, key)
        assert v2_columns == v1_columns, (schema, table)
        assert len(v2_rows) == len(v1_rows) > 0, (schema, table)
        for v1_row, v2_row in zip(v1_rows, v2_rows, strict=True):
            assert v2_row == v1_row, (schema, table)  # vectors compared as their exact text
    _, rows = _read_table(v2, "public", TABLE, "id")
    assert {len(r[5][1:-1].split(",")) for r in rows if r[5]} == {3, 4, 5, 1536}

    # every v1 table has its own manifest entry (none hidden by a name collision), and v1
    # still equals the backup
    backups = resources["backups"].path()
    latest = max(backups.glob("*/manifest.json")).parent
    manifest = Manifest.load(latest)
    with connect(v1, role="test", read_only=True) as conn:
        names = inventory.list_tables(conn)
    assert len(manifest.postgres.tables) == len(names)
    assert {inventory.qualified(s, t) for s, t in names} == set(manifest.postgres.tables)
    assert not compare_v1(resources["v1"].settings(), backup_reference(latest, manifest)).any()


def test_manifest_keys_never_collide_and_toc_names_with_spaces_are_exact():
    keys = {inventory.qualified(s, t) for s, t in (*COLLIDING, ("public", TABLE), ("a", "b"))}
    assert len(keys) == 4 and "a.b" in keys  # plain names keep their plain key
    line = '2911; 0 16728 TABLE DATA public Weird "Quoted" Table cartrita'
    assert _is_ambiguous(line, "TABLE DATA")
    assert not _is_ambiguous("2911; 0 16728 TABLE DATA public users cartrita", "TABLE DATA")


# --------------------------------------------------------------------------------------------------
# b. The v2 search functions: injection in every text argument, out-of-range numbers
# --------------------------------------------------------------------------------------------------

Q3 = "[1,0,0]"
V4 = "[0.5,0.25,0.125,1]"
BASELINE = (  # source_table, source_id, content, embedding, model
    ("docs", "1", "alpha apple orchard", "[1,0,0]", "m3"),
    ("docs", "2", "beta banana grove", "[0.9,0.1,0]", "m3"),
    ("notes", "3", "gamma cherry tree", "[0,1,0]", "m3"),
    ("docs", "1", "delta date palm", "[1,0,0,0,0]", "m5"),
)
INJECTIONS = {
    "drop_table": "x'; DROP TABLE embeddings; --",
    "or_1_eq_1": "') OR 1=1 --",
    "format_specifiers": "%s %I %L %1$s %%",
    "placeholder": "$1",
    "backslash": "\\",
    "dollar_quotes": "$fn$; DROP TABLE embeddings; $fn$",
    "double_quotes": '"; DROP TABLE embeddings; --',
    "100kB": ("x'; DROP TABLE embeddings; -- ') OR 1=1 -- " * 2500)[:100_000],
    "every_plane": PLANES + CONTROLS + BIDI + COMBINING + ZWJ_EMOJI,
}


# The tests sharing 'search_db' run on one pytest-xdist worker, which sets it up once
# (support/groups.py says why the mark is written here).
SHARES_SEARCH_DB = pytest.mark.xdist_group("test_hostile_input")


@pytest.fixture(scope="module")
def search_db(base_dir: Path) -> Iterator:
    """A v2-like PostgreSQL with a database migrated by the project's migrations, and a few
    embeddings of two models (3 and 5 dimensions)."""
    server = LocalPostgres(base_dir / "hostile-search-db", free_port(), durable=False)
    try:
        with connect(server.ensure_running(), role="test") as conn:
            conn.execute("CREATE DATABASE cartrita")
        settings = server.settings("cartrita")
        MigrationRunner(settings, data_path("sql") / "migrations").migrate()
        with connect(settings, role="test") as conn:
            for row in BASELINE:
                conn.execute("SELECT upsert_embedding(%s, %s, %s, %s::vector, %s)", row)
            baseline = _state(conn)
        yield settings, baseline
    finally:
        server.stop()


@pytest.fixture
def db(search_db) -> Iterator[psycopg.Connection]:
    """A connection; afterwards embeddings, the models and the relations are as they were."""
    settings, baseline = search_db
    with connect(settings, role="test") as conn:
        yield conn
        assert _state(conn) == baseline


def _state(conn: psycopg.Connection) -> tuple[list[tuple], ...]:
    embeddings = conn.execute(
        "SELECT id, source_table, source_id, model, dimensions, content, content_hash, "
        "embedding::text, metadata::text, created_at, updated_at FROM embeddings ORDER BY id"
    ).fetchall()
    models = conn.execute("SELECT * FROM embedding_models ORDER BY model").fetchall()
    relations = conn.execute(
        "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1, 2"
    ).fetchall()
    return embeddings, models, relations


def _rows(conn: psycopg.Connection, query: str, *args: object) -> list[tuple]:
    return conn.execute(query, args).fetchall()  # type: ignore[arg-type]


def _last_metric(conn: psycopg.Connection) -> tuple:
    return conn.execute(
        "SELECT search_type, model, source_filter, result_count "
        "FROM search_performance_metrics ORDER BY id DESC LIMIT 1"
    ).fetchone()


SIM = "SELECT id, similarity FROM similarity_search(%s::vector, 0.0, 10, %s, %s, true)"
HYB = (
    "SELECT id, vector_score, keyword_score, combined_score "
    "FROM hybrid_search(%s, %s::vector, 0.7, 0.3, 0.0, 10, %s, %s, true)"
)
RRF = (
    "SELECT id, vector_rank, keyword_rank, rrf_score "
    "FROM hybrid_search_rrf(%s, %s::vector, 10, 60, %s, %s, true)"
)


@SHARES_SEARCH_DB
@pytest.mark.parametrize("payload", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_injection_in_every_text_argument_is_data(db, payload):
    # source_filter / model_filter: nothing matches, so nothing comes back (not an error, and
    # not a wider result); the metric records the argument as it was given
    assert _rows(db, SIM, Q3, payload, None) == []
    assert _last_metric(db) == ("similarity", "m3", payload, 0)
    assert _rows(db, SIM, Q3, None, payload) == []
    assert _last_metric(db) == ("similarity", payload, None, 0)
    for query in (HYB, RRF):
        assert _rows(db, query, "apple", Q3, payload, None) == []
        assert _rows(db, query, "apple", Q3, None, payload) == []
        # query_text: a keyword query that matches no content, so exactly the vector side
        vector_only = _rows(db, query, "", Q3, None, None)
        assert len(vector_only) == 3
        assert _rows(db, query, payload, Q3, None, None) == vector_only
    assert _rows(db, SIM, Q3, None, None)  # the data is still there

    # upsert_embedding: the payload in each text argument is stored exactly, once
    added, models = [], {"inj-m4", payload}
    for argument in ("source_table", "source_id", "content", "model"):
        values = {
            "source_table": "injection_test",
            "source_id": f"id-{argument}",
            "content": f"content for {argument}",
            "model": "inj-m4",
            argument: payload,
        }
        upsert = "SELECT * FROM upsert_embedding(%s, %s, %s, %s::vector, %s)"
        args = (values["source_table"], values["source_id"], values["content"], V4)
        limit = {"source_table": 255, "source_id": 1024, "model": 255}.get(argument)
        if limit is not None and len(payload.encode()) > limit:  # a key longer than the limit
            error = _error(db, upsert, *args, values["model"])
            assert error.sqlstate == "22001" and f"{argument} must be at most" in str(error)
            continue
        ((embedding_id, action),) = _rows(db, upsert, *args, values["model"])
        assert action == "inserted", argument
        stored = _rows(
            db,
            "SELECT source_table, source_id, content, model, embedding::text FROM embeddings "
            "WHERE id = %s",
            embedding_id,
        )
        assert stored == [(*args[:3], values["model"], V4)], argument
        assert _rows(db, upsert, *args, values["model"]) == [(embedding_id, "unchanged")]
        added.append(embedding_id)
    fits = sum(len(payload.encode()) <= n for n in (255, 1024, 255))
    assert len(_rows(db, "SELECT 1 FROM embeddings WHERE id = ANY(%s)", added)) == 1 + fits
    # an over-long key is refused by name (22001); content of any length is stored
    db.execute("DELETE FROM embeddings WHERE id = ANY(%s)", (added,))
    db.execute("DELETE FROM embedding_models WHERE model = ANY(%s)", (list(models),))
    # the db fixture then checks embeddings, models and relations are exactly as before


def _error(conn: psycopg.Connection, query: str, *args: object) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(query, args).fetchall()  # type: ignore[arg-type]
    return info.value


S = "SELECT * FROM similarity_search(%s::vector, %s::float8, %s::int)"
H = "SELECT * FROM hybrid_search('apple', %s::vector, %s::float8, %s::float8, %s::float8, %s::int)"
R = "SELECT * FROM hybrid_search_rrf('apple', %s::vector, %s::int, %s::int)"
NAN, INF = float("nan"), float("inf")
COUNTS = (0, -1, 1001, 2**31 - 1, None)
THRESHOLDS = (NAN, 2.0, -2.0, None)


def _xfail(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=reason)


def _case(name: str, query: str, args: tuple, argument: str, defect: str | None = None) -> object:
    marks = [_xfail(defect)] if defect else []
    return pytest.param(query, args, argument, id=name, marks=marks)


OUT_OF_RANGE = [
    *[_case(f"similarity-count-{n}", S, (Q3, 0.5, n), "match_count") for n in COUNTS],
    *[_case(f"hybrid-count-{n}", H, (Q3, 0.7, 0.3, 0.5, n), "match_count") for n in COUNTS],
    *[_case(f"rrf-count-{n}", R, (Q3, n, 60), "match_count") for n in COUNTS],
    *[_case(f"similarity-threshold-{t}", S, (Q3, t, 10), "match_threshold") for t in THRESHOLDS],
    *[
        _case(f"hybrid-threshold-{t}", H, (Q3, 0.7, 0.3, t, 10), "match_threshold")
        for t in THRESHOLDS
    ],
    _case("hybrid-vector_weight-negative", H, (Q3, -1.0, 0.3, 0.5, 10), "vector_weight"),
    _case("hybrid-keyword_weight-negative", H, (Q3, 0.7, -0.5, 0.5, 10), "keyword_weight"),
    _case("hybrid-weights-both-0", H, (Q3, 0.0, 0.0, 0.5, 10), "vector_weight"),
    _case("hybrid-vector_weight-NULL", H, (Q3, None, 0.3, 0.5, 10), "vector_weight"),
    _case("rrf-k-0", R, (Q3, 10, 0), "rrf_k"),
    _case("rrf-k-negative", R, (Q3, 10, -5), "rrf_k"),
    _case("rrf-k-NULL", R, (Q3, 10, None), "rrf_k"),
    # fixed by migration 0008
    _case("hybrid-vector_weight-NaN", H, (Q3, NAN, 0.3, 0.5, 10), "vector_weight"),
    _case("hybrid-keyword_weight-Infinity", H, (Q3, 0.7, INF, 0.5, 10), "keyword_weight"),
    _case("rrf-k-2147483647", R, (Q3, 10, 2**31 - 1), "rrf_k"),
    _case("similarity-wrong-dimension", S, ("[1,0]", 0.5, 10), "query_embedding"),
    _case("similarity-NULL-query", S, (None, 0.5, 10), "query_embedding"),
]  # fmt: skip


@SHARES_SEARCH_DB
@pytest.mark.parametrize(("query", "args", "argument"), OUT_OF_RANGE)
def test_out_of_range_numbers_are_refused_naming_the_argument(db, query, args, argument):
    error = _error(db, query, *args)
    message = str(error)
    assert error.sqlstate and error.sqlstate.startswith("22"), (error.sqlstate, message)
    assert argument in message and "must" in message, message  # the argument and its range


@SHARES_SEARCH_DB
def test_query_of_the_wrong_dimension_for_the_model_names_the_argument(db):
    error = _error(db, "SELECT * FROM similarity_search(%s::vector, 0.5, 10, NULL, 'm3')", "[1,0]")
    assert error.sqlstate == "22023" and "query_embedding" in str(error), str(error)


@SHARES_SEARCH_DB
def test_an_empty_query_vector_is_impossible(db):
    for query in ("SELECT * FROM similarity_search(%s::vector)", "SELECT %s::vector"):
        error = _error(db, query, "[]")
        assert error.sqlstate == "22000", error
        assert "vector must have at least 1 dimension" in str(error)


@SHARES_SEARCH_DB
@pytest.mark.parametrize("argument", ["source_table", "source_id", "model"])
def test_upsert_of_an_overlong_key_names_the_argument(db, argument):
    rng = random.Random(11)
    huge = "".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(34_000))  # ~100 kB UTF-8
    values = {"source_table": "t", "source_id": "1", "model": "inj-m4", argument: huge}
    try:
        error = _error(
            db,
            "SELECT * FROM upsert_embedding(%s, %s, 'c', %s::vector, %s)",
            values["source_table"], values["source_id"], V4, values["model"],
        )  # fmt: skip
    finally:  # leave the module's database as it was, whatever happened
        db.execute("DELETE FROM embeddings WHERE model IN ('inj-m4', %s)", (huge,))
        db.execute("DELETE FROM embedding_models WHERE model IN ('inj-m4', %s)", (huge,))
    assert error.sqlstate in ("22001", "22023") and argument in str(error), str(error)


# --------------------------------------------------------------------------------------------------
# c. Broken v1 .env files through `cartrita forward`
# --------------------------------------------------------------------------------------------------

# unit/test_envfile.py covers the parser's messages; these go through the CLI entry point.
# case -> (content, the problem, the fix) as the user must read them
BAD_ENV_FILES: dict[str, tuple[bytes | None, str, str]] = {
    "malformed": (
        b"this is not an env file\n",
        "expected KEY=VALUE but the line has no '='",
        "Write KEY=VALUE, or start the line with # to make it a comment.",
    ),
    "empty": (
        b"",
        "missing POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB (and no DATABASE_URL)",
        "Add POSTGRES_USER=..., POSTGRES_PASSWORD=..., POSTGRES_DB=... or DATABASE_URL=",
    ),
    "nul_bytes": (
        b"POSTGRES_PASSWORD=ab\x00cd\n",
        "is not a text file (binary content at byte 20)",
        "Check the path, or set CARTRITA_V1_ENV_FILE",
    ),
    "invalid_utf8": (
        b"POSTGRES_PASSWORD=\xff\xfe\n",
        "is not a text file (binary content at byte 18)",
        "Check the path, or set CARTRITA_V1_ENV_FILE",
    ),
    "huge_50MB": (
        None,
        "file is larger than 1 MiB (1048576 bytes); not an env file",
        "Check the path, or set CARTRITA_V1_ENV_FILE",
    ),
    "duplicate_key": (
        b"POSTGRES_USER=a\nPOSTGRES_USER=b\n",
        "duplicate key POSTGRES_USER (first defined on line 1)",
        "Remove or rename one of the two definitions.",
    ),
    "invalid_key": (
        b"1POSTGRES=x\n",
        "invalid key name '1POSTGRES'",
        "Key names are letters, digits and _, and do not start with a digit.",
    ),
    "unterminated_quote": (
        b"POSTGRES_USER=app\nPOSTGRES_PASSWORD='s3cret\n",
        "unterminated single quote (opened on this line, never closed)",
        "Add the closing quote.",
    ),
    "export_without_value": (
        b"export POSTGRES_PASSWORD\n",
        "expected KEY=VALUE but the line has no '='",
        "Write KEY=VALUE",
    ),
    "missing_file": (
        None,
        "the v1 environment file does not exist",
        "Fix CARTRITA_V1_ENV_FILE (or --env-file) to name v1's .env.",
    ),
}
_CLI_RUNS: dict[str, dict[str, object]] = {}


def _write_bad_env(case: str, folder: Path) -> Path:
    path = folder / ".env"
    content = BAD_ENV_FILES[case][0]
    if case == "huge_50MB":  # a real text file, not a sparse one
        line = b"OPENAI_API_KEY=" + b"k" * 1000 + b"\n"
        with path.open("wb") as out:
            for _ in range(50 * 2**20 // len(line) + 1):
                out.write(line)
    elif case != "missing_file":
        assert content is not None
        path.write_bytes(content)
    return path


def _start_cli(case: str, base_dir: Path) -> dict[str, object]:
    folder = base_dir / "env-cli" / case
    folder.mkdir(parents=True)
    env_file = _write_bad_env(case, folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTRITA_")}
    env.update(
        CARTRITA_STATE_DIR=str(folder / "state"),
        CARTRITA_V1_ENV_FILE=str(env_file),
        CARTRITA_V2_PG_PORT=str(free_port()),
        CARTRITA_V2_REDIS_PORT=str(free_port()),
        DAGSTER_HOME=str(folder / "home"),
    )
    (folder / "home").mkdir()
    exe = str(Path(sys.executable).parent / "cartrita")
    with (folder / "out").open("w") as out, (folder / "err").open("w") as err:
        proc = subprocess.Popen([exe, "forward", "--reports-dir", str(folder / "reports")],
                                env=env, cwd=folder, stdout=out, stderr=err)  # fmt: skip
    return {"folder": folder, "env_file": env_file, "proc": proc, "started": time.monotonic()}


def _finish_cli(run: dict[str, object]) -> dict[str, object]:
    proc = run.pop("proc")
    assert isinstance(proc, subprocess.Popen)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory
    proc.returncode = os.waitstatus_to_exitcode(status)
    folder = Path(str(run["folder"]))
    run.update(
        returncode=proc.returncode,
        seconds=time.monotonic() - float(str(run["started"])),
        max_rss_mib=usage.ru_maxrss / 1024,
        out=(folder / "out").read_text(errors="replace"),
        err=(folder / "err").read_text(errors="replace"),
    )
    return run


def _run_cli(case: str, base_dir: Path) -> dict[str, object]:
    """``cartrita forward`` on the case's .env. The first call runs every case, a few at a time
    (each CLI start costs seconds of imports and Dagster setup); later calls read the outcome."""
    if not _CLI_RUNS:
        pending = list(BAD_ENV_FILES)
        while pending:
            batch, pending = pending[:4], pending[4:]
            for run in [_start_cli(c, base_dir) for c in batch]:
                _CLI_RUNS[Path(str(run["folder"])).name] = _finish_cli(run)
    return _CLI_RUNS[case]


@pytest.mark.parametrize("case", BAD_ENV_FILES)
def test_bad_env_file_fails_fast_with_the_problem_and_creates_nothing(case, base_dir):
    run = _run_cli(case, base_dir)
    output = f"{run['out']}\n{run['err']}"
    folder, env_file = Path(str(run["folder"])), Path(str(run["env_file"]))
    assert run["returncode"] != 0, output[-3000:]
    _, problem, fix = BAD_ENV_FILES[case]
    shape = re.escape(str(env_file)) + r"(: line \d+)?: " + re.escape(problem) + r"\. "
    assert re.search(shape + re.escape(fix), output), output[-3000:]  # the problem, then the fix
    assert "Traceback (most recent call last)" not in output  # the process did not crash
    assert float(str(run["seconds"])) < 60, run["seconds"]  # 50 MB too: 1 MiB is read at most
    state = folder / "state"
    assert not (state / "backups").exists() or not any((state / "backups").iterdir())
    assert not (state / "v2").exists()  # no v2 server, so no v2 database
    assert not (state / "demo-v1").exists()  # and the demo v1 was not started instead
    assert sorted(p.name for p in env_file.parent.glob(".env*")) == (
        [] if case == "missing_file" else [".env"]
    )  # no .env.v1 / .env.v2 written beside it


def test_huge_env_file_does_not_eat_memory(base_dir):
    small, huge = _run_cli("malformed", base_dir), _run_cli("huge_50MB", base_dir)
    assert huge["max_rss_mib"] < small["max_rss_mib"] + 40, (huge, small)  # < the 50 MB file


@pytest.mark.parametrize("case", BAD_ENV_FILES)
def test_bad_env_file_gives_exactly_one_error_line_and_no_traceback(case, base_dir):
    run = _run_cli(case, base_dir)
    lines = f"{run['out']}\n{run['err']}".splitlines()
    mentioning = [line for line in lines if str(run["env_file"]) in line]
    assert len(mentioning) == 1, mentioning
    assert not any("Stack Trace" in line or line.lstrip().startswith('File "') for line in lines)
