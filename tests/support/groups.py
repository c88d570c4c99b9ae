"""Which tests must share a pytest-xdist worker, and the check that they are marked so.

``scripts/test.sh`` runs the suite with ``--dist loadgroup``: tests spread over the workers one
by one, except those carrying the same ``xdist_group`` mark, which run on one worker. A
module-scoped fixture (one forward run shared by a module's tests, servers started once for a
module) is set up once per worker that runs one of its tests, and the control plane once per
worker: such tests carry a group so that happens once.

The marks are written in the test modules (``pytestmark`` or a decorator), not added by a
collection hook: xdist turns a mark into the group only in its own
``pytest_collection_modifyitems`` (it appends ``@<group>`` to the test's node id there, and the
scheduler reads the group from the node id), so a mark a conftest hook adds after that hook ran
is silently ignored, and whether a conftest's hook runs before or after xdist's depends on when
that conftest was loaded. A mark in the module exists before any hook runs.

``problems`` finds a test that shares such a fixture without sharing its group; the root
conftest refuses to run the suite then.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

# session fixtures too costly to start once per worker: the group every test using them is in
SESSION_GROUPS = {"control_plane": "k8s-control-plane"}


def group_of(item: pytest.Item) -> str | None:
    """The group xdist gives ``item`` (its marks' names, sorted and joined as xdist does)."""
    names = {
        str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
        for mark in item.iter_markers("xdist_group")
    }
    return "_".join(sorted(names)) or None


def _shared(item: pytest.Item) -> list[tuple[str, str]]:
    """(what, required group or "") of each fixture ``item`` shares with other tests."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:  # not a test function (e.g. a doctest)
        return []
    shared: list[tuple[str, str]] = []
    for name in item.fixturenames:  # type: ignore[attr-defined]
        if name in SESSION_GROUPS:
            shared.append((f"the session fixture {name!r}", SESSION_GROUPS[name]))
            continue
        defs = info.name2fixturedefs.get(name)
        if defs and defs[-1].scope in ("module", "class", "package"):
            module = item.nodeid.split("::")[0]
            shared.append((f"{module}'s {defs[-1].scope}-scoped fixture {name!r}", ""))
    return shared


def problems(items: list[pytest.Item]) -> list[str]:
    """One line per fixture whose tests are not all in one group (or not in the one required)."""
    groups: dict[str, dict[str | None, list[str]]] = defaultdict(lambda: defaultdict(list))
    required: dict[str, str] = {}
    for item in items:
        for what, group in _shared(item):
            groups[what][group_of(item)].append(item.nodeid.split("@")[0])
            if group:
                required[what] = group
    found: list[str] = []
    for what, by_group in groups.items():
        want = required.get(what)
        if len(by_group) == 1 and None not in by_group and (want is None or want in by_group):
            continue
        detail = "; ".join(
            f"{group or 'no group'}: {', '.join(ids[:3])}{' ...' if len(ids) > 3 else ''}"
            for group, ids in by_group.items()
        )
        fix = f'pytest.mark.xdist_group("{want}")' if want else "one pytest.mark.xdist_group"
        found.append(f"tests sharing {what} must all carry {fix} ({detail})")
    return found
