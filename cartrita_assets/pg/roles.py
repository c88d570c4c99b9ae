"""Recreate v1's roles in v2 without sending a password in clear text."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import unicodedata

import psycopg
from psycopg import sql


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """A SCRAM-SHA-256 verifier for ``password`` (what PostgreSQL stores), computed client-side.

    The server only ever receives the verifier, so the password cannot end up in its logs.
    """
    salt = os.urandom(16)
    normalised = unicodedata.normalize("NFKC", password).encode()
    salted = hashlib.pbkdf2_hmac("sha256", normalised, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def ensure_role(
    conn: psycopg.Connection, name: str, attrs: dict[str, bool], password: str | None
) -> str:
    """Create ``name`` with v1's attributes if missing; set its password when given.

    Returns:
        ``"created"``, ``"updated"`` or ``"exists"``.
    """
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    flags = " ".join(
        word if attrs.get(key) else "NO" + word
        for key, word in (
            ("superuser", "SUPERUSER"),
            ("login", "LOGIN"),
            ("createdb", "CREATEDB"),
            ("createrole", "CREATEROLE"),
        )
    )
    verb = "ALTER" if exists else "CREATE"
    stmt = sql.SQL(f"{verb} ROLE {{}} WITH {flags}").format(sql.Identifier(name))
    if password is not None:
        stmt = sql.SQL("{} PASSWORD {}").format(stmt, sql.Literal(scram_verifier(password)))
    if exists and password is None:
        return "exists"
    conn.execute(stmt)
    return "updated" if exists else "created"
