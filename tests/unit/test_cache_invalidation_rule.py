"""The cache invalidation rule without servers: parsing, refusals, and which ids a key holds."""

from __future__ import annotations

import pytest

from cartrita_assets.environments import cache_key_patterns
from cartrita_assets.vectors.invalidation import CacheRuleError, describe, parse_rule


def test_rule_is_parsed_per_source_and_described_back():
    rule = parse_rule("conversations=cache:conversation:{id}; kb=search:kb:{id}:*,kb:[ab]:{id}")
    assert describe(rule) == (
        "conversations=cache:conversation:{id}; kb=search:kb:{id}:*,kb:[ab]:{id}"
    )
    assert rule["conversations"][0].exact and not rule["kb"][0].exact
    assert parse_rule("none") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("conversations", "is not source=pattern"),
        ("conversations=cache:all", "must hold {id} exactly once"),
        ("c=a:{id}:{id}", "must hold {id} exactly once"),
        ("c=a:{id}*", "a wildcard touches {id}"),
        ("c=a:*{id}", "a wildcard touches {id}"),
        ("c=a:{id}?", "a wildcard touches {id}"),
    ],
)
def test_bad_rules_are_refused_naming_the_part(text, message):
    with pytest.raises(CacheRuleError, match=message.replace("{", r"\{").replace("?", r"\?")):
        parse_rule(text)


def test_a_key_is_matched_to_its_id_literally():
    (pattern,) = parse_rule("s=search:kb:{id}:*")["s"]
    assert pattern.family() == "search:kb:*:*"
    assert pattern.ids_in("search:kb:1:x") == {"1"}
    assert "1" not in pattern.ids_in("search:kb:12:x")  # id 1 never takes id 12's keys
    assert pattern.ids_in("search:kb:1") == set()
    (klass,) = parse_rule("s=kb:[ab]:{id}")["s"]
    assert klass.ids_in("kb:a:5") == {"5"} and klass.ids_in("kb:c:5") == set()


def test_the_default_rule_and_the_setting(monkeypatch):
    monkeypatch.delenv("CARTRITA_CACHE_KEY_PATTERNS", raising=False)
    assert describe(cache_key_patterns()) == "conversations=cache:conversation:{id}"
    monkeypatch.setenv("CARTRITA_CACHE_KEY_PATTERNS", "oops")
    with pytest.raises(CacheRuleError, match="CARTRITA_CACHE_KEY_PATTERNS: 'oops'"):
        cache_key_patterns()
