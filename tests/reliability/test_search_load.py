"""The load case: the search functions under 8 concurrent clients while the index is rebuilt.

The CI size of ``benchmarks/search_load.py`` (same functions): 20,000 rows (HNSW by the volume
rule), 8 clients for 15 s, one forced re-index (CREATE INDEX CONCURRENTLY, DROP INDEX
CONCURRENTLY, rename) and updates, deletes and re-inserts during the load.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "search_load.py"


def _benchmark() -> ModuleType:
    if "search_load" in sys.modules:
        return sys.modules["search_load"]
    spec = importlib.util.spec_from_file_location("search_load", BENCHMARK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["search_load"] = module
    spec.loader.exec_module(module)
    return module


def test_search_under_load_during_reindex_and_writes(base_dir):
    bench = _benchmark()
    work = base_dir / "search-load"
    work.mkdir()
    work.chmod(0o755)
    started = time.perf_counter()
    lines: list[str] = []
    result = bench.run_case(
        work, rows=20000, clients=8, seconds=15, queries=500, updates=200, deletes=60,
        max_reindexes=1, log=lines.append,
    )  # fmt: skip
    summary = bench.summarise(result)
    print("\n".join(lines + bench.report_lines(summary)))
    print(f"case took {time.perf_counter() - started:.1f}s; "
          f"p95 {summary['latency']['all']['p95_ms']:.1f} ms")  # fmt: skip

    assert summary["setup"]["index"][0][2] == "hnsw", summary["setup"]
    errors = summary["errors"]
    assert errors["count"] == 0, errors["first"]
    assert not errors["reindex"] and not errors["writes"], errors
    consistency = summary["consistency"]
    assert summary["calls"]["similarity_search"] > 100 and summary["calls"]["hybrid_search"] > 100
    assert consistency["calls_without_10_rows"] == 0, consistency["short_examples"]
    assert consistency["deleted_ids_returned"] == 0, consistency["deleted_examples"]
    assert consistency["self_hit_miss_rate"] <= 0.005, consistency["miss_examples"]
    assert summary["writes"]["updated"] == 200 and summary["writes"]["reinserted"] == 60

    # the re-index really overlapped the load: every phase inside the window, calls around it
    (reindex,) = summary["reindexes"]
    phases = {s["phase"]: s for s in reindex["statements"]}
    assert {"create", "drop old", "rename"} <= phases.keys(), reindex["statements"]
    first_call = min(c.started for c in result.calls)
    last_call = max(c.ended for c in result.calls)
    assert first_call < phases["create"]["started"], (first_call, phases["create"])
    assert phases["rename"]["ended"] < last_call, (phases["rename"], last_call)
    assert summary["calls_during_build"] > 0 and summary["calls_after_last_swap"] > 0
    for phase in ("drop old", "rename"):  # searches started while these statements ran
        assert any(
            c.started <= phases[phase]["ended"] and c.ended >= phases[phase]["started"]
            for c in result.calls
        ), phase
    assert result.index["valid"] and result.index["ann_indexes"] == 1, result.index
    assert all(summary["checks"].values()), summary["checks"]
