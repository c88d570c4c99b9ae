"""Unit tests for cartrita_assets.envfile: the dotenv parser and the v1 settings built from it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cartrita_assets.envfile import (
    MAX_ENV_FILE_BYTES,
    EnvFile,
    PostgresSettings,
    RedisSettings,
    V1Settings,
    parse_env_text,
    read_env_file,
)
from cartrita_assets.errors import EnvFileError

SECRET = "Hunter2-S3cr3t-pw"
"""A password-like value; no error message may ever contain it."""

PG_KEYS = "POSTGRES_USER=app\nPOSTGRES_PASSWORD=pgpw\nPOSTGRES_DB=cartrita\n"


def parse(text: str | bytes) -> EnvFile:
    return parse_env_text(text, "test.env")


def parse_error(text: str | bytes) -> str:
    """Parse ``text``, expect an EnvFileError and return its message (checked secret-free)."""
    with pytest.raises(EnvFileError) as info:
        parse(text)
    message = str(info.value)
    assert SECRET not in message
    return message


def settings(text: str) -> V1Settings:
    return V1Settings.from_env_file(parse(text))


def settings_error(text: str) -> str:
    """Build settings from ``text``, expect an EnvFileError and return its (secret-free) message."""
    env = parse(text)
    with pytest.raises(EnvFileError) as info:
        V1Settings.from_env_file(env)
    message = str(info.value)
    for value in env.values.values():
        if SECRET in value:
            assert value not in message
    assert SECRET not in message
    return message


# --------------------------------------------------------------------------------------------------
# Decoding and reading
# --------------------------------------------------------------------------------------------------


def test_bom_is_stripped_and_sha256_covers_raw_bytes() -> None:
    raw = b"\xef\xbb\xbfA=1\n"
    env = parse(raw)
    assert env.values == {"A": "1"}
    assert env.lines == {"A": 1}
    assert env.raw_bytes_sha256 == hashlib.sha256(raw).hexdigest()
    assert env.source == "test.env"


def test_str_input_with_bom_is_the_same_as_bytes() -> None:
    assert parse("\ufeffA=1\n").values == {"A": "1"}
    assert parse("A=1\n").raw_bytes_sha256 == hashlib.sha256(b"A=1\n").hexdigest()


def test_crlf_and_lone_cr_become_lf() -> None:
    env = parse(b"A=1\r\nB=2\rC=3\r\nD='x\r\ny\rz'\r\nE=5")
    assert env.values == {"A": "1", "B": "2", "C": "3", "D": "x\ny\nz", "E": "5"}
    assert env.lines == {"A": 1, "B": 2, "C": 3, "D": 4, "E": 7}


def test_invalid_utf8_is_binary_with_offset() -> None:
    message = parse_error(b"A=" + SECRET.encode() + b"\xff\n")
    offset = 2 + len(SECRET)
    assert message == (
        f"test.env: is not a text file (binary content at byte {offset}). Check the path, "
        "or set CARTRITA_V1_ENV_FILE or pass --env-file with the path of the v1 .env file."
    )


def test_nul_byte_is_binary_and_offset_counts_the_bom() -> None:
    message = parse_error(b"\xef\xbb\xbfPASS=" + SECRET.encode() + b"\x00\n")
    assert f"is not a text file (binary content at byte {3 + 5 + len(SECRET)})" in message


def test_first_bad_byte_wins_between_nul_and_invalid_utf8() -> None:
    assert "binary content at byte 2)" in parse_error(b"A=\xfe\x00")
    assert "binary content at byte 2)" in parse_error(b"A=\x00\xfe")


def test_lone_surrogate_in_str_is_binary() -> None:
    assert "binary content at byte 2)" in parse_error("A=\ud800")


def test_exactly_max_size_is_accepted() -> None:
    text = "A=" + "x" * (MAX_ENV_FILE_BYTES - 3) + "\n"
    assert len(text.encode()) == MAX_ENV_FILE_BYTES
    assert len(parse(text).values["A"]) == MAX_ENV_FILE_BYTES - 3


def test_more_than_1_mib_is_an_error() -> None:
    message = parse_error("PASS=" + SECRET + "x" * MAX_ENV_FILE_BYTES)
    assert message.startswith("test.env: file is larger than 1 MiB (1048576 bytes)")


def test_read_env_file(tmp_path: Path) -> None:
    path = tmp_path / "v1.env"
    path.write_bytes(b"A=1\r\nB='two'\n")
    env = read_env_file(path)
    assert env.source == str(path)
    assert env.values == {"A": "1", "B": "two"}
    assert env.raw_bytes_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_read_huge_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "huge.env"
    path.write_bytes(b"A=" + b"x" * (MAX_ENV_FILE_BYTES + 10))
    with pytest.raises(EnvFileError, match=r"^.*huge\.env: file is larger than 1 MiB"):
        read_env_file(path)


def test_read_binary_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dump.bin"
    path.write_bytes(b"PGDMP\x01\x0e\x00\x04\x08")
    with pytest.raises(EnvFileError, match=r"is not a text file \(binary content at byte 7\)"):
        read_env_file(path)


def test_missing_file_names_path_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "nope.env"
    with pytest.raises(EnvFileError) as info:
        read_env_file(path)
    assert str(info.value) == (
        f"{path}: file not found. Check the path, or set CARTRITA_V1_ENV_FILE or pass "
        "--env-file with the path of the v1 .env file."
    )


def test_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(
        EnvFileError, match=r"is a directory, not a file\. set CARTRITA_V1_ENV_FILE"
    ):
        read_env_file(tmp_path)


# --------------------------------------------------------------------------------------------------
# Syntax
# --------------------------------------------------------------------------------------------------


def test_empty_and_comment_only_files_have_no_keys() -> None:
    assert parse("").values == {}
    env = parse("\n   \n# comment\n\t  # indented comment\n")
    assert env.values == {} and env.lines == {}


def test_blank_lines_and_comments_are_skipped_but_counted() -> None:
    env = parse("# header\n\nA=1\n   # A=2\n\t\nB=2\n")
    assert env.values == {"A": "1", "B": "2"}
    assert env.lines == {"A": 3, "B": 6}


def test_values_are_insertion_ordered() -> None:
    assert list(parse("Z=1\nA=2\nM=3\n").values) == ["Z", "A", "M"]


def test_export_prefix() -> None:
    env = parse("export A=1\nexport \t  B=2\n\texport C=3\n")
    assert env.values == {"A": "1", "B": "2", "C": "3"}


def test_export_as_a_key_name() -> None:
    assert parse("export=1\n").values == {"export": "1"}
    assert parse("export  =2\n").values == {"export": "2"}


def test_export_without_assignment_is_an_error() -> None:
    assert parse_error("export FOO\n").startswith("test.env: line 1: expected KEY=VALUE")


def test_whitespace_around_key_and_equals_is_ignored() -> None:
    env = parse("  A  =  value  \n\tB\t=\tx y\t\n")
    assert env.values == {"A": "value", "B": "x y"}


def test_empty_values() -> None:
    env = parse("A=\nB=   \nC= # just a comment\nD=''\nE=\"\"\n")
    assert env.values == {"A": "", "B": "", "C": "", "D": "", "E": ""}


def test_inline_comment_needs_whitespace_before_hash() -> None:
    env = parse("A=value # comment\nB=value\t# tab comment\nPASS=ab#cd\nC=#x\nD=a#b #c\n")
    assert env.values == {"A": "value", "B": "value", "PASS": "ab#cd", "C": "#x", "D": "a#b"}


def test_unquoted_value_keeps_inner_spaces_quotes_and_backslashes() -> None:
    env = parse('A=hello   world\nB=it\'s "ok"\nC=a\\nb\\\\c\nD=x=y=z\n')
    assert env.values == {"A": "hello   world", "B": 'it\'s "ok"', "C": "a\\nb\\\\c", "D": "x=y=z"}


def test_single_quotes_are_literal() -> None:
    env = parse("B=1\nA='  $B ${B} \\n \\\\ \" # not a comment  '\n")
    assert env.values["A"] == '  $B ${B} \\n \\\\ " # not a comment  '


def test_single_quoted_value_may_span_lines() -> None:
    env = parse("A='line1\nline2  \n\n  line4'\nB=2\n")
    assert env.values == {"A": "line1\nline2  \n\n  line4", "B": "2"}
    assert env.lines == {"A": 1, "B": 5}


def test_double_quote_escapes() -> None:
    env = parse('A="n\\n t\\t r\\r q\\" b\\\\ d\\$ other\\q end\\""\n')
    assert env.values["A"] == 'n\n t\t r\r q" b\\ d$ other\\q end"'


def test_double_quoted_value_may_span_lines() -> None:
    env = parse('X=1\nA="first\n  second # kept\nthird"  # comment\nB=2\n')
    assert env.values == {"X": "1", "A": "first\n  second # kept\nthird", "B": "2"}
    assert env.lines == {"X": 1, "A": 2, "B": 5}


def test_quoted_values_keep_surrounding_spaces_and_hash() -> None:
    env = parse("A=  '  a # b  '  \nB=\"  c # d  \"\n")
    assert env.values == {"A": "  a # b  ", "B": "  c # d  "}


def test_comment_after_closing_quote() -> None:
    env = parse("A='x'   # comment\nB=\"y\"#comment\nC='z'\t\n")
    assert env.values == {"A": "x", "B": "y", "C": "z"}


def test_text_after_closing_quote_is_an_error() -> None:
    message = parse_error(f"A=1\nPASS='{SECRET}'x\n")
    assert message == (
        "test.env: line 2: unexpected text after the closing single quote. Only spaces and a "
        "# comment may follow it; put all of the value inside quotes."
    )


def test_text_after_multiline_closing_quote_names_closing_line() -> None:
    message = parse_error(f'A=1\nPASS="{SECRET}\n{SECRET}" {SECRET}\n')
    assert message.startswith("test.env: line 3: unexpected text after the closing double quote.")


def test_unterminated_quotes_name_the_opening_line() -> None:
    single = parse_error(f"A=1\n\nPASS='{SECRET}\nB=2\nC=3\n")
    assert single.startswith("test.env: line 3: unterminated single quote")
    double = parse_error(f'A=1\nPASS="{SECRET}\\"\n')
    assert double.startswith("test.env: line 2: unterminated double quote")
    trailing_backslash = parse_error(f'PASS="{SECRET}\\')
    assert trailing_backslash.startswith("test.env: line 1: unterminated double quote")


def test_line_without_equals_is_an_error() -> None:
    message = parse_error(f"A=1\n{SECRET}\n")
    assert message == (
        "test.env: line 2: expected KEY=VALUE but the line has no '='. Write KEY=VALUE, or "
        "start the line with # to make it a comment."
    )


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (f"1ABC={SECRET}", "invalid key name '1ABC'"),
        (f"MY-KEY={SECRET}", "invalid key name 'MY-KEY'"),
        (f"MY KEY={SECRET}", "invalid key name 'MY KEY'"),
        (f"KÉY={SECRET}", "invalid key name 'KÉY'"),
        (f"={SECRET}", "missing key name before '='"),
        (f"{'K' * 63}-={SECRET}", "invalid key name. "),
        (f"A\x01B={SECRET}", "invalid key name. "),
    ],
)
def test_invalid_key_names(line: str, shown: str) -> None:
    message = parse_error(f"OK=1\n{line}\n")
    assert message.startswith(f"test.env: line 2: {shown}")
    assert message.endswith("Key names are letters, digits and _, and do not start with a digit.")


def test_invalid_key_containing_the_secret_is_not_shown_when_long() -> None:
    key = f"{SECRET} {'x' * 60}"
    message = parse_error(f"{key}=1\n")
    assert message.startswith("test.env: line 1: invalid key name. ")


def test_key_names_with_digits_and_underscores() -> None:
    assert parse("_A1=1\na_b_2=2\n").values == {"_A1": "1", "a_b_2": "2"}


def test_duplicate_key_names_both_lines() -> None:
    message = parse_error(f"A=1\nPASS={SECRET}\n\nPASS={SECRET}x\n")
    assert message == (
        "test.env: line 4: duplicate key PASS (first defined on line 2). "
        "Remove or rename one of the two definitions."
    )


def test_repr_shows_keys_not_values() -> None:
    env = parse(f"PASS={SECRET}\nUSER=bob\n")
    assert repr(env) == "EnvFile(source='test.env', keys=['PASS', 'USER'])"
    assert SECRET not in str(env)


# --------------------------------------------------------------------------------------------------
# Interpolation
# --------------------------------------------------------------------------------------------------


def test_interpolation_forms_from_earlier_keys() -> None:
    env = parse('A=x\nB=${A}-$A-${A:-d}-${A-d}\nC="[$B]"\nD=${A}_${A}.$A\n')
    assert env.values == {"A": "x", "B": "x-x-x-x", "C": "[x-x-x-x]", "D": "x_x.x"}


def test_bare_reference_takes_the_longest_name() -> None:
    message = parse_error("A=x\nB=$A_1\n")
    assert message.startswith("test.env: line 2: variable A_1 is not defined on an earlier line")


def test_defaults() -> None:
    env = parse("E=\nF=${E:-dflt}\nG=${E-dflt}\nH=${UNSET:-u1}\nI=${UNSET-u2}\nJ=${UNSET:-}\n")
    assert env.values["F"] == "dflt"
    assert env.values["G"] == ""
    assert env.values["H"] == "u1"
    assert env.values["I"] == "u2"
    assert env.values["J"] == ""


def test_default_is_literal_text() -> None:
    env = parse('A=${UNSET:-a b $x}\nB="${UNSET-has spaces}"\n')
    assert env.values == {"A": "a b $x", "B": "has spaces"}


def test_undefined_reference_names_line_and_variable() -> None:
    message = parse_error(f"A=1\nPASS={SECRET}${{MISSING}}\n")
    assert message == (
        "test.env: line 2: variable MISSING is not defined on an earlier line of this file. "
        "Define it on an earlier line or give a default (${NAME:-default}); the process "
        "environment is never used. If the '$' is literal, single-quote the value or write \\$ "
        "inside double quotes."
    )


def test_later_defined_reference_is_an_error() -> None:
    message = parse_error(f"PASS={SECRET}$LATER\nLATER=1\n")
    assert message.startswith("test.env: line 1: variable LATER is not defined on an earlier line")


def test_self_reference_is_an_error() -> None:
    assert "variable A is not defined" in parse_error("A=${A}\n")


def test_double_quoted_reference_to_undefined_is_an_error() -> None:
    assert parse_error(f'X=1\nPASS="{SECRET}$NOPE"\n').startswith("test.env: line 2: variable NOPE")


def test_undefined_name_that_may_be_part_of_a_password_is_hidden() -> None:
    message = parse_error("PASS=hunter2$ecretStuff\n")
    assert "ecretStuff" not in message
    assert message.startswith("test.env: line 1: a '$' reference names a variable not defined")


def test_process_environment_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTRITA_TEST_FROM_ENV", SECRET)
    message = parse_error("A=${CARTRITA_TEST_FROM_ENV}\n")
    assert "variable CARTRITA_TEST_FROM_ENV is not defined" in message
    env = parse("A=${CARTRITA_TEST_FROM_ENV:-fallback}\nB=${CARTRITA_TEST_FROM_ENV-fb}\n")
    assert env.values == {"A": "fallback", "B": "fb"}


def test_dollar_not_followed_by_name_is_literal() -> None:
    assert parse("A=cost$5 $ $-x end$\n").values == {"A": "cost$5 $ $-x end$"}
    assert parse('B="$1 $.$"\n').values == {"B": "$1 $.$"}
    assert parse("X=1\nC=$$X\n").values["C"] == "$1"


def test_escaped_dollar_in_double_quotes_is_literal() -> None:
    assert parse('A="\\$HOME \\${X}"\n').values == {"A": "$HOME ${X}"}


def test_interpolated_value_is_not_expanded_again() -> None:
    env = parse("A='$X ${Y}'\nB=${A}\nC=\"$A\"\n")
    assert env.values == {"A": "$X ${Y}", "B": "$X ${Y}", "C": "$X ${Y}"}


def test_inline_comment_is_removed_before_interpolation() -> None:
    env = parse("A=1\nB=$A # $UNDEFINED\n")
    assert env.values["B"] == "1"


def test_unterminated_brace_is_an_error() -> None:
    message = parse_error(f"PASS={SECRET}${{A\n")
    assert message.startswith("test.env: line 1: '${' without a closing '}'.")


@pytest.mark.parametrize("reference", ["${}", "${1X}", "${A:?x}", "${A B}", "${A+x}"])
def test_invalid_braced_reference_is_an_error(reference: str) -> None:
    message = parse_error(f"A=1\nPASS={SECRET}{reference}\n")
    assert message.startswith("test.env: line 2: invalid variable reference.")


# --------------------------------------------------------------------------------------------------
# No error message contains a value
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"PASS={SECRET}\nPASS={SECRET}\n",
        f"PASS={SECRET}\n{SECRET}\n",
        f"PASS={SECRET}\n-={SECRET}\n",
        f"PASS={SECRET}\n={SECRET}\n",
        f"PASS='{SECRET}\n",
        f'PASS="{SECRET}\n',
        f"PASS='{SECRET}'{SECRET}\n",
        f'PASS="{SECRET}"{SECRET}\n',
        f"PASS={SECRET}${{UNDEFINED}}\n",
        f"PASS=${{-{SECRET}}}\n",
        f"PASS=${{{SECRET}\n",
        f"PASS=${SECRET.replace('-', '_')}\n",
        f"PASS={SECRET}${{X\n",
        f"PASS={SECRET}\nMY-KEY={SECRET}\n",
        f"PASS={SECRET}\x00",
        f"PASS={SECRET}".encode() + b"\xc3",
        f"PASS={SECRET}" + "#" * MAX_ENV_FILE_BYTES,
    ],
)
def test_parse_errors_never_contain_values(text: str | bytes) -> None:
    parse_error(text)  # asserts SECRET is not in the message


# --------------------------------------------------------------------------------------------------
# Settings: PostgreSQL
# --------------------------------------------------------------------------------------------------


def test_postgres_from_separate_keys_with_defaults() -> None:
    pg = settings(PG_KEYS).postgres
    assert pg == PostgresSettings(
        host="localhost", port=5432, user="app", password="pgpw", dbname="cartrita"
    )
    assert pg.sslmode is None
    assert pg.conninfo_kwargs() == {
        "host": "localhost",
        "port": 5432,
        "user": "app",
        "password": "pgpw",
        "dbname": "cartrita",
    }
    assert pg.masked_dsn() == "postgresql://app:***@localhost:5432/cartrita"


def test_postgres_from_separate_keys_with_host_and_port() -> None:
    pg = settings(PG_KEYS + "POSTGRES_HOST=db.internal\nPOSTGRES_PORT=6543\n").postgres
    assert (pg.host, pg.port) == ("db.internal", 6543)


def test_database_url_is_percent_decoded() -> None:
    url = (
        "postgresql://us%40er:p%40ss%3Aw%2Frd%25@db.example.com:6543/my%20db"
        "?application_name=x&sslmode=require"
    )
    pg = settings(f"DATABASE_URL={url}\n").postgres
    assert pg == PostgresSettings(
        host="db.example.com",
        port=6543,
        user="us@er",
        password="p@ss:w/rd%",
        dbname="my db",
        sslmode="require",
    )
    assert pg.conninfo_kwargs()["sslmode"] == "require"
    assert pg.masked_dsn() == "postgresql://us%40er:***@db.example.com:6543/my%20db?sslmode=require"


def test_database_url_postgres_scheme_and_default_port() -> None:
    pg = settings("DATABASE_URL=postgres://app:pw@db/cartrita\n").postgres
    assert (pg.host, pg.port, pg.user, pg.password, pg.dbname) == (
        "db",
        5432,
        "app",
        "pw",
        "cartrita",
    )


def test_database_url_ipv6_host() -> None:
    pg = settings("DATABASE_URL=postgresql://app:pw@[::1]:5433/db\n").postgres
    assert (pg.host, pg.port) == ("::1", 5433)
    assert pg.masked_dsn() == "postgresql://app:***@[::1]:5433/db"


def test_postgres_repr_hides_password() -> None:
    pg = settings(f"POSTGRES_USER=app\nPOSTGRES_PASSWORD={SECRET}\nPOSTGRES_DB=db\n").postgres
    assert SECRET not in repr(pg)
    assert "password" not in repr(pg)


def test_database_url_and_keys_that_agree() -> None:
    text = (
        "DATABASE_URL=postgresql://app:pgpw@DB.local:5433/cartrita\n"
        "POSTGRES_HOST=db.local\nPOSTGRES_PORT=5433\n" + PG_KEYS + "OTHER=1\n"
    )
    result = settings(text)
    assert result.postgres.masked_dsn() == "postgresql://app:***@db.local:5433/cartrita"
    assert result.other_keys == {"OTHER": "1"}


def test_database_url_and_keys_that_disagree_name_the_keys() -> None:
    text = (
        f"DATABASE_URL=postgresql://app:{SECRET}@db:5432/cartrita\n"
        "POSTGRES_HOST=db\nPOSTGRES_PORT=5433\nPOSTGRES_USER=app\n"
        f"POSTGRES_PASSWORD={SECRET}x\nPOSTGRES_DB=other\n"
    )
    assert settings_error(text) == (
        "test.env: DATABASE_URL disagrees with POSTGRES_PORT, POSTGRES_PASSWORD, POSTGRES_DB. "
        "Make them agree, or remove either DATABASE_URL or the separate keys."
    )


def test_partial_postgres_keys_are_fine_with_database_url() -> None:
    pg = settings("DATABASE_URL=postgresql://app:pw@db/x\nPOSTGRES_USER=app\n").postgres
    assert pg.user == "app"


def test_missing_postgres_keys_are_named() -> None:
    message = settings_error(f"POSTGRES_USER=app\nAPI_TOKEN={SECRET}\n")
    assert message == (
        "test.env: missing POSTGRES_PASSWORD, POSTGRES_DB (and no DATABASE_URL). Add "
        "POSTGRES_PASSWORD=..., POSTGRES_DB=... or "
        "DATABASE_URL=postgresql://user:pass@host:port/db."
    )


def test_no_postgres_settings_at_all() -> None:
    message = settings_error("")
    assert message.startswith(
        "test.env: missing POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB (and no DATABASE_URL)."
    )


def test_empty_values_count_as_missing() -> None:
    message = settings_error(
        "POSTGRES_USER=app\nPOSTGRES_PASSWORD=\nPOSTGRES_DB=db\nDATABASE_URL=\n"
    )
    assert message.startswith("test.env: missing POSTGRES_PASSWORD (and no DATABASE_URL).")


def test_settings_never_read_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_PASSWORD", SECRET)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://a:{SECRET}@h/d")
    monkeypatch.setenv("REDIS_URL", "redis://h")
    message = settings_error("POSTGRES_USER=app\nPOSTGRES_DB=db\n")
    assert message.startswith("test.env: missing POSTGRES_PASSWORD (and no DATABASE_URL).")
    assert settings(PG_KEYS).redis is None


@pytest.mark.parametrize("port", ["abc", "0", "65536", "-1", "+80", "5432.0", "1_000", "٣"])
def test_invalid_postgres_port(port: str) -> None:
    message = settings_error(f"{PG_KEYS}POSTGRES_PORT={port}\n")
    assert message == (
        "test.env: line 4: POSTGRES_PORT is not an integer between 1 and 65535. "
        "Fix the value of POSTGRES_PORT."
    )


@pytest.mark.parametrize("port", ["0", "65536", "abc"])
def test_invalid_database_url_port(port: str) -> None:
    message = settings_error(f"X=1\nDATABASE_URL=postgresql://app:{SECRET}@db:{port}/x\n")
    assert message.startswith(
        "test.env: line 2: DATABASE_URL has a port that is not an integer between 1 and 65535."
    )


def test_boundary_ports_are_accepted() -> None:
    assert settings(PG_KEYS + "POSTGRES_PORT=1\n").postgres.port == 1
    assert settings(PG_KEYS + "POSTGRES_PORT=65535\n").postgres.port == 65535


def test_unsupported_database_url_scheme() -> None:
    message = settings_error(f"DATABASE_URL=mysql://app:{SECRET}@db/x\n")
    assert message == (
        "test.env: line 1: DATABASE_URL has the unsupported scheme 'mysql'. Use postgres:// or "
        "postgresql://, as in postgresql://user:pass@host:port/db."
    )


def test_database_url_that_is_not_a_url() -> None:
    message = settings_error(f"DATABASE_URL={SECRET}:{SECRET}@db/x\n")
    assert message.startswith("test.env: line 1: DATABASE_URL is not a URL.")


def test_database_url_with_unencoded_hash() -> None:
    message = settings_error(f"DATABASE_URL=postgresql://app:{SECRET}#x@db/x\n")
    assert message.startswith("test.env: line 1: DATABASE_URL contains an unencoded '#'.")


def test_database_url_missing_parts() -> None:
    message = settings_error("DATABASE_URL=postgresql://app@db\n")
    assert message.startswith(
        "test.env: line 1: DATABASE_URL has no password and no database name."
    )
    message = settings_error(f"DATABASE_URL=postgresql://:{SECRET}@db/x\n")
    assert message.startswith("test.env: line 1: DATABASE_URL has no user name.")


# --------------------------------------------------------------------------------------------------
# Settings: Redis
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected", "masked"),
    [
        ("redis://cache", RedisSettings("cache", 6379, None), "redis://cache:6379/0"),
        (
            "redis://:p%40w@cache:6380/2",
            RedisSettings("cache", 6380, "p@w", db=2),
            "redis://:***@cache:6380/2",
        ),
        (
            "redis://default:pw@cache/3",
            RedisSettings("cache", 6379, "pw", db=3, username="default"),
            "redis://default:***@cache:6379/3",
        ),
        (
            "rediss://:pw@cache.example.com:6390",
            RedisSettings("cache.example.com", 6390, "pw", tls=True),
            "rediss://:***@cache.example.com:6390/0",
        ),
        ("redis://cache/", RedisSettings("cache", 6379, None), "redis://cache:6379/0"),
    ],
)
def test_redis_url_forms(url: str, expected: RedisSettings, masked: str) -> None:
    redis = settings(f"{PG_KEYS}REDIS_URL={url}\n").redis
    assert redis == expected
    assert redis is not None and redis.masked_url() == masked


def test_redis_from_separate_keys() -> None:
    redis = settings(PG_KEYS + "REDIS_HOST=cache\n").redis
    assert redis == RedisSettings("cache", 6379, None, db=0)
    text = PG_KEYS + "REDIS_HOST=cache\nREDIS_PORT=6380\nREDIS_PASSWORD=rpw\nREDIS_DB=4\n"
    redis = settings(text).redis
    assert redis == RedisSettings("cache", 6380, "rpw", db=4)
    assert redis is not None and redis.masked_url() == "redis://:***@cache:6380/4"


def test_redis_absent_is_none() -> None:
    assert settings(PG_KEYS + "OTHER=1\n").redis is None
    assert settings(PG_KEYS + "REDIS_URL=\nREDIS_HOST=\n").redis is None


def test_redis_keys_without_host_are_an_error() -> None:
    message = settings_error(f"{PG_KEYS}REDIS_PASSWORD={SECRET}\nREDIS_DB=1\n")
    assert message == (
        "test.env: REDIS_PASSWORD, REDIS_DB set but neither REDIS_HOST nor REDIS_URL. "
        "Add REDIS_HOST=<host> or REDIS_URL=redis://:password@host:6379/0."
    )


def test_redis_repr_hides_password() -> None:
    redis = settings(f"{PG_KEYS}REDIS_URL=redis://:{SECRET}@cache\n").redis
    assert SECRET not in repr(redis)


def test_redis_url_and_keys_that_agree() -> None:
    text = f"{PG_KEYS}REDIS_URL=redis://:rpw@cache:6380/1\nREDIS_HOST=CACHE\nREDIS_PORT=6380\n"
    text += "REDIS_PASSWORD=rpw\nREDIS_DB=1\n"
    assert settings(text).redis == RedisSettings("cache", 6380, "rpw", db=1)


def test_redis_url_and_keys_that_disagree() -> None:
    text = f"{PG_KEYS}REDIS_URL=redis://cache/1\nREDIS_HOST=cache\nREDIS_PASSWORD={SECRET}\n"
    text += "REDIS_DB=2\n"
    assert settings_error(text) == (
        "test.env: REDIS_URL disagrees with REDIS_PASSWORD, REDIS_DB. "
        "Make them agree, or remove either REDIS_URL or the separate keys."
    )


def test_redis_url_with_credentials_but_no_colon() -> None:
    message = settings_error(f"{PG_KEYS}REDIS_URL=redis://{SECRET}@cache\n")
    assert message.startswith("test.env: line 4: REDIS_URL has credentials without ':'")


@pytest.mark.parametrize("path", ["/x", "/-1", "/1/2"])
def test_redis_url_with_bad_db(path: str) -> None:
    message = settings_error(f"{PG_KEYS}REDIS_URL=redis://:{SECRET}@cache{path}\n")
    assert message.startswith("test.env: line 4: REDIS_URL has a database number (the path)")


def test_redis_url_bad_scheme_and_port() -> None:
    message = settings_error(f"{PG_KEYS}REDIS_URL=http://:{SECRET}@cache\n")
    assert message.startswith("test.env: line 4: REDIS_URL has the unsupported scheme 'http'.")
    message = settings_error(f"{PG_KEYS}REDIS_URL=redis://:{SECRET}@cache:99999\n")
    assert message.startswith("test.env: line 4: REDIS_URL has a port that is not an integer")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("REDIS_PORT=x", "line 5: REDIS_PORT is not an integer between 1 and 65535."),
        ("REDIS_DB=-1", "line 5: REDIS_DB is not an integer of at least 0."),
    ],
)
def test_invalid_redis_keys(line: str, problem: str) -> None:
    message = settings_error(f"{PG_KEYS}REDIS_HOST=cache\n{line}\n")
    assert message.startswith(f"test.env: {problem}")


# --------------------------------------------------------------------------------------------------
# Settings: other keys and secrets
# --------------------------------------------------------------------------------------------------


def test_other_keys_keep_order_and_exclude_consumed_keys() -> None:
    text = (
        "Z_FIRST=1\nDATABASE_URL=postgresql://app:pw@db/x\nLOG_LEVEL=info\nPOSTGRES_HOST=db\n"
        "REDIS_URL=redis://cache\nREDIS_PORT=6379\nA_LAST=2\n"
    )
    result = settings(text)
    assert list(result.other_keys.items()) == [
        ("Z_FIRST", "1"),
        ("LOG_LEVEL", "info"),
        ("A_LAST", "2"),
    ]
    assert result.source == "test.env"


def test_secret_values() -> None:
    text = (
        "DATABASE_URL=postgresql://app:p%40ss@db/x\n"
        "REDIS_URL=redis://:rpw@cache\n"
        "API_TOKEN=tok\nJWT_SECRET=jwt\nSMTP_PASS=smtp\nSENTRY_DSN=dsn\nGCP_CREDENTIALS=cred\n"
        "OPENAI_API_KEY=sk-1\nLOG_LEVEL=info\nEMPTY_PASSWORD=\n"
        "UPSTREAM=https://bob:up%2Fpw@api.example.com/\nPLAIN_URL=https://example.com/\n"
    )
    assert settings(text).secret_values() == [
        "p@ss",
        "p%40ss",
        "rpw",
        "tok",
        "jwt",
        "smtp",
        "dsn",
        "cred",
        "sk-1",
        "https://bob:up%2Fpw@api.example.com/",
        "up/pw",
        "up%2Fpw",
        "up%2fpw",
    ]


def test_v1_settings_repr_hides_secrets() -> None:
    text = f"DATABASE_URL=postgresql://app:{SECRET}@db/x\nREDIS_URL=redis://:{SECRET}@c\n"
    text += f"API_TOKEN={SECRET}\n"
    assert SECRET not in repr(settings(text))
