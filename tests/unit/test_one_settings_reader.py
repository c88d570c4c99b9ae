"""Only environments.py reads ``CARTRITA_*`` settings: every other module asks it. Read from the
source (no import), so a module reading one anywhere, even in code no test runs, fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import cartrita_assets

PACKAGE = Path(cartrita_assets.__file__).resolve().parent
READER = PACKAGE / "environments.py"
PREFIX = "CARTRITA_"


def _environ(node: ast.expr) -> bool:
    """``os.environ`` / ``environ`` (however imported)."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def settings_read(source: str) -> list[str]:
    """``line: name`` of each ``CARTRITA_*`` variable ``source`` reads from the environment:
    ``os.environ[...]``, ``os.environ.get/pop/setdefault(...)``, ``os.getenv(...)``,
    ``... in os.environ``, by a string or by a module-level constant holding one. Writing one
    (``os.environ[name] = ...``, for a child process) is not reading."""
    tree = ast.parse(source)
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name) and isinstance(node.value.value, str)
    }

    def name_of(node: ast.expr | None) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
        elif isinstance(node, ast.Name):
            value = constants.get(node.id)
        else:
            return None
        return value if value and value.startswith(PREFIX) else None

    found: list[tuple[int, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _environ(node.value):
            if isinstance(node.ctx, ast.Load):
                found.append((node.lineno, name_of(node.slice)))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            getter = (
                isinstance(func, ast.Attribute)
                and func.attr in ("get", "pop", "setdefault")
                and _environ(func.value)
            ) or (
                (isinstance(func, ast.Attribute) and func.attr == "getenv")
                or (isinstance(func, ast.Name) and func.id == "getenv")
            )
            if getter:
                found.append((node.lineno, name_of(node.args[0])))
        elif isinstance(node, ast.Compare) and len(node.ops) == 1:
            if isinstance(node.ops[0], ast.In | ast.NotIn) and _environ(node.comparators[0]):
                found.append((node.lineno, name_of(node.left)))
    return [f"{line}: {name}" for line, name in sorted(found) if name]


def test_only_environments_reads_cartrita_settings():
    readers = {
        str(path.relative_to(PACKAGE)): found
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != READER and (found := settings_read(path.read_text()))
    }
    assert readers == {}, f"read these through environments.py instead: {readers}"
    assert settings_read(READER.read_text()), "environments.py reads no CARTRITA_* setting?"


def test_the_search_finds_every_way_of_reading_one():
    source = """
import os
from os import environ, getenv
NAME = "CARTRITA_B"
a = os.environ.get("CARTRITA_A", "")
b = os.environ[NAME]
c = getenv("CARTRITA_C")
d = "CARTRITA_D" in os.environ
e = environ.pop("CARTRITA_E", None)
os.environ["CARTRITA_W"] = "written for a child process"
f = os.environ.get("HOME")
"""
    assert settings_read(source) == [
        "5: CARTRITA_A",
        "6: CARTRITA_B",
        "7: CARTRITA_C",
        "8: CARTRITA_D",
        "9: CARTRITA_E",
    ]
