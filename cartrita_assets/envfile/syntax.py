"""The dotenv grammar: :class:`_Parser` walks normalised text into keys, values and line numbers.

Quoting, escapes, ``export``, comments and ``$`` references follow ``docs/env-file.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from cartrita_assets.envfile.errors import _env_error
from cartrita_assets.errors import EnvFileError

_WS = " \t"
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHOWABLE_VAR_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,62}")
_EXPORT_RE = re.compile(r"export[ \t]+(?=[^ \t=])")
_INLINE_COMMENT_RE = re.compile(r"[ \t]#")
_DOUBLE_BODY_RE = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)
_REF = r"\$\{(?P<braced>[^}]*)\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|(?P<open>\$\{)"
_UNQUOTED_TOKEN_RE = re.compile(_REF)
_DOUBLE_TOKEN_RE = re.compile(r"\\(?P<esc>.)|" + _REF, re.DOTALL)
_BRACED_RE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-)(?P<default>.*))?", re.S)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}


class _Parser:
    """Walks the normalised text statement by statement, filling ``values`` and ``lines``."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.pos = 0
        self.line = 1
        self.values: dict[str, str] = {}
        self.lines: dict[str, int] = {}

    def error(self, line: int, problem: str, fix: str) -> EnvFileError:
        return _env_error(self.source, problem, fix, line)

    def run(self) -> None:
        while self.pos < len(self.text):
            self._statement()

    def _line_end(self, pos: int) -> int:
        end = self.text.find("\n", pos)
        return len(self.text) if end < 0 else end

    def _advance_to(self, end: int) -> None:
        """Move past the newline at ``end`` (or to the end of the text), counting lines."""
        self.line += self.text.count("\n", self.pos, end) + 1
        self.pos = end + 1

    def _statement(self) -> None:
        end = self._line_end(self.pos)
        body = self.text[self.pos : end].lstrip(_WS)
        if not body.strip(_WS) or body.startswith("#"):
            self._advance_to(end)
            return
        offset = end - len(body)
        export = _EXPORT_RE.match(body)
        if export:
            body, offset = body[export.end() :], offset + export.end()
        equals = body.find("=")
        if equals < 0:
            fix = "Write KEY=VALUE, or start the line with # to make it a comment."
            raise self.error(self.line, "expected KEY=VALUE but the line has no '='", fix)
        key = self._key(body[:equals].strip(_WS))
        value, end = self._value(offset + equals + 1, end)
        self.values[key] = value
        self.lines[key] = self.line
        self._advance_to(end)

    def _key(self, key: str) -> str:
        """Validate a key name and reject duplicates."""
        if not _KEY_RE.fullmatch(key):
            shown = f" {key!r}" if len(key) < 64 and "=" not in key and key.isprintable() else ""
            problem = f"invalid key name{shown}" if key else "missing key name before '='"
            fix = "Key names are letters, digits and _, and do not start with a digit."
            raise self.error(self.line, problem, fix)
        if key in self.lines:
            problem = f"duplicate key {key} (first defined on line {self.lines[key]})"
            raise self.error(self.line, problem, "Remove or rename one of the two definitions.")
        return key

    def _value(self, start: int, end: int) -> tuple[str, int]:
        """Parse the value starting at ``start``; return it and the end of its last line."""
        raw = self.text[start:end]
        lead = len(raw) - len(raw.lstrip(_WS))
        if raw[lead : lead + 1] == "'":
            return self._quoted(start + lead, self._single_close)
        if raw[lead : lead + 1] == '"':
            inner, end = self._quoted(start + lead, self._double_close)
            return self._interpolate(inner, _DOUBLE_TOKEN_RE), end
        comment = _INLINE_COMMENT_RE.search(raw)
        raw = raw[: comment.start()] if comment else raw
        return self._interpolate(raw.strip(_WS), _UNQUOTED_TOKEN_RE), end

    def _single_close(self, start: int) -> int:
        return self.text.find("'", start)

    def _double_close(self, start: int) -> int:
        match = _DOUBLE_BODY_RE.match(self.text, start)  # always matches (maybe empty)
        close = match.end() if match else start
        return close if self.text.startswith('"', close) else -1

    def _quoted(self, opening: int, find_close: Callable[[int], int]) -> tuple[str, int]:
        """Return the text between the quote at ``opening`` and its closing quote."""
        kind = "single" if self.text[opening] == "'" else "double"
        close = find_close(opening + 1)
        if close < 0:
            problem = f"unterminated {kind} quote (opened on this line, never closed)"
            raise self.error(self.line, problem, "Add the closing quote.")
        end = self._line_end(close)
        trailing = self.text[close + 1 : end].lstrip(_WS)
        if trailing and not trailing.startswith("#"):
            line = self.line + self.text.count("\n", self.pos, close)
            fix = "Only spaces and a # comment may follow it; put all of the value inside quotes."
            raise self.error(line, f"unexpected text after the closing {kind} quote", fix)
        return self.text[opening + 1 : close], end

    def _interpolate(self, raw: str, tokens: re.Pattern[str]) -> str:
        """Apply escapes (double quotes only) and ``$`` references to ``raw``."""
        return tokens.sub(self._replace, raw)

    def _replace(self, match: re.Match[str]) -> str:
        escaped = match.groupdict().get("esc")
        if escaped is not None:
            return _ESCAPES.get(escaped, "\\" + escaped)
        if match["bare"] is not None:
            return self._resolve(match["bare"], None, "")
        if match["open"] is not None:
            fix = "Close it with }, or single-quote the value if the '$' is literal."
            raise self.error(self.line, "'${' without a closing '}'", fix)
        braced = _BRACED_RE.fullmatch(match["braced"])
        if braced is None:
            fix = "Use ${NAME}, ${NAME:-default} or ${NAME-default} (NAME: letters, digits, _)."
            raise self.error(self.line, "invalid variable reference", fix)
        return self._resolve(braced["name"], braced["op"], braced["default"] or "")

    def _resolve(self, name: str, op: str | None, default: str) -> str:
        """Value of ``name`` among the keys defined so far, honouring ``:-`` / ``-`` defaults."""
        value = self.values.get(name)
        if (op == ":-" and not value) or (op == "-" and value is None):
            return default
        if value is not None:
            return value
        raise self._undefined(name)

    def _undefined(self, name: str) -> EnvFileError:
        # A name that does not look like an env variable is likely part of a password: hide it.
        if _SHOWABLE_VAR_RE.fullmatch(name):
            problem = f"variable {name} is not defined on an earlier line of this file"
        else:
            problem = "a '$' reference names a variable not defined earlier (name not shown)"
        fix = (
            "Define it on an earlier line or give a default (${NAME:-default}); the process "
            "environment is never used. If the '$' is literal, single-quote the value "
            "or write \\$ inside double quotes."
        )
        return self.error(self.line, problem, fix)
