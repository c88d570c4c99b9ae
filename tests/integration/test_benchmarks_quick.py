"""The quality benchmark's code on a few queries of a real labelled collection (every script's
--quick mode runs in test_benchmarks.py). Scores are range-checked, timings never asserted."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.integration

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _benchmark(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_search_quality_runs_a_few_scifact_queries_through_every_mode():
    bench = _benchmark("search_quality")
    if not (bench.DATA / "scifact").is_dir():
        pytest.skip(f"the SciFact collection is not at {bench.DATA}")
    collection = bench.subset(bench.load_collection("scifact"), 3, 30)
    assert len(collection.queries) == 3 and len(collection.docs) >= 30
    lines: list[str] = []
    results = bench.run(collection, lines.append)
    presets = {f"preset {name}" for name in ("balanced", "keyword", "rrf", "semantic")}
    assert set(results) == set(bench.MODES) | presets  # every preset, called by name
    for scores in results.values():
        assert 0.0 <= scores.ndcg10 <= 1.0 and 0.0 <= scores.recall100 <= 1.0
    # every judged document is among the 33 loaded: each mode retrieves some of them
    assert all(results[mode].recall100 > 0 for mode in bench.MODES), results
    assert any("embedded 3" in line for line in lines)  # the progress line of the queries
