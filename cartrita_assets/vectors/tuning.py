"""The search effort of each model, tuned to a recall target after its index is built.

For a model with an ANN index, :func:`tune_model` measures recall@10 against an exact scan on
the fixed query set of :mod:`recall` at rising efforts (``hnsw.ef_search`` from the database
default, ``ivfflat.probes`` from the index's own, doubling) and keeps the first whose Wilson 95%
lower bound reaches the target while its p50 stays within the latency budget. When none does,
an exact scan is used if it fits the budget; otherwise the best effort within budget is kept
and the shortfall is recorded, so the recall check fails and says why.

The choice goes into ``embedding_models.search_effort``. Migration 0010 then routes the model:
an HNSW model whose effort is the database default keeps its inlined branch (the common case,
one generic plan); a model that needs more goes through the general path, which sets its effort
for the call; effort 0 scans exactly. Recall and latency are measured once more through
``similarity_search`` itself and recorded with the choice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from cartrita_assets.vectors import recall
from cartrita_assets.vectors.recall import Measurement

Log = Callable[[str], None]
BUDGET_MS = 20.0
MAX_EFFORT = 1000


@dataclass
class Tuning:
    """What the tuning chose for one model and what it measured on the way."""

    model: str
    kind: str
    effort: int | None
    passed: bool
    note: str
    final: Measurement | None = None
    tried: list[Measurement] = field(default_factory=list)

    def as_row(self) -> list[object]:
        m = self.final
        effort = "exact scan" if self.effort == 0 else self.effort
        numbers = [round(m.recall, 4), round(m.lower, 4), round(m.p50_ms, 2)] if m else ["-"] * 3
        return [self.model, self.kind, effort, *numbers, self.note]


def efforts(start: int, limit: int) -> list[int]:
    """``start``, doubling, up to ``limit`` (included)."""
    out, e = [], max(1, start)
    while e < limit:
        out.append(e)
        e *= 2
    return [*out, limit]


def _start_and_limit(conn: psycopg.Connection, model: str, kind: str) -> tuple[int, int]:
    if kind == "hnsw":
        start = conn.execute("SELECT public.database_search_effort()").fetchone()[0]  # type: ignore[index]
        return int(start), MAX_EFFORT
    lists, probes = conn.execute(
        "SELECT (index_params ->> 'lists')::int, (index_params ->> 'probes')::int "
        "FROM public.embedding_models WHERE model = %s",
        (model,),
    ).fetchone()  # type: ignore[misc]
    return int(probes or 1), int(lists or 1)


def choose_effort(
    tried: list[Measurement], exact: Measurement | None, target: float, budget_ms: float
) -> tuple[int, bool, str]:
    """(effort, passed, why) from the measurements: a pure rule, unit-testable."""
    fits = [m for m in tried if m.p50_ms <= budget_ms]
    for m in fits:
        if m.lower >= target:
            why = (f"effort {m.effort}: recall {m.recall:.4f} (95% lower bound {m.lower:.4f} "
                   f">= {target}), p50 {m.p50_ms:.2f} ms <= {budget_ms} ms")  # fmt: skip
            return int(m.effort or 0), True, why
    if exact is not None and exact.p50_ms <= budget_ms:
        why = (f"no effort up to {tried[-1].effort if tried else '-'} reached {target} within "
               f"{budget_ms} ms; an exact scan does (p50 {exact.p50_ms:.2f} ms)")  # fmt: skip
        return 0, True, why
    best = max(fits, key=lambda m: m.lower) if fits else (tried[0] if tried else None)
    if best is None:
        return 0, False, "no measurement"
    exact_ms = exact.p50_ms if exact else float("nan")
    why = (f"SHORTFALL: no effort within the {budget_ms} ms budget reaches recall {target} at "
           f"the 95% lower bound (best: effort {best.effort}, lower bound {best.lower:.4f}, "
           f"p50 {best.p50_ms:.2f} ms) and an exact scan takes {exact_ms:.2f} ms")  # fmt: skip
    return int(best.effort or 0), False, why


def tune_model(
    conn: psycopg.Connection,
    model: str,
    kind: str,
    log: Log,
    *,
    target: float = recall.TARGET,
    budget_ms: float = BUDGET_MS,
) -> Tuning:
    """Measure, choose and record ``model``'s search effort (see the module docstring)."""
    if kind not in ("hnsw", "ivfflat"):
        _record(conn, model, None, None, "exact scan: no ANN index, recall 1 by construction")
        return Tuning(model, kind, None, True, "exact scan: no ANN index")
    queries = recall.sample_queries(conn, model)
    start, limit = _start_and_limit(conn, model, kind)
    tried: list[Measurement] = []
    for effort in efforts(start, limit):
        search = recall.at_effort(conn, model, kind, effort)
        m = recall.measure(conn, model, queries, search, effort)
        tried.append(m)
        log(f"{model}: effort {effort}: recall@10 {m.recall:.4f} (lower bound {m.lower:.4f}), "
            f"p50 {m.p50_ms:.2f} ms")  # fmt: skip
        if m.p50_ms > budget_ms or m.lower >= target:
            break
    exact = None
    if tried[-1].lower < target or tried[-1].p50_ms > budget_ms:
        exact = recall.measure(conn, model, queries, recall.at_effort(conn, model, kind, 0), 0)
    effort, passed, note = choose_effort(tried, exact, target, budget_ms)
    _record(conn, model, effort, None, note)
    final = recall.measure(conn, model, queries)  # through similarity_search, as callers search
    _record(conn, model, effort, final, note)
    log(f"{model}: search effort {effort} ({note}); through similarity_search: "
        f"recall {final.recall:.4f}, lower bound {final.lower:.4f}, "
        f"p50 {final.p50_ms:.2f} ms")  # fmt: skip
    return Tuning(model, kind, effort, passed and final.lower >= target, note, final, tried)


def _record(
    conn: psycopg.Connection,
    model: str,
    effort: int | None,
    m: Measurement | None,
    note: str,
) -> None:
    """Store the choice. The table's trigger regenerates the search functions (they are only
    rewritten when a model moved between the inlined and the general path)."""
    conn.execute(
        "UPDATE public.embedding_models SET search_effort = %s, search_recall = %s, "
        "search_recall_lower = %s, search_p50_ms = %s, search_tuned_at = now(), "
        "search_tuning = %s WHERE model = %s",
        (effort, m.recall if m else None, m.lower if m else None, m.p50_ms if m else None,
         note, model),
    )  # fmt: skip


def tune_models(
    conn: psycopg.Connection,
    models: list[tuple[str, str]],
    log: Log,
    *,
    target: float = recall.TARGET,
    budget_ms: float = BUDGET_MS,
) -> list[Tuning]:
    """:func:`tune_model` for each (model, index kind)."""
    return [tune_model(conn, m, k, log, target=target, budget_ms=budget_ms) for m, k in models]
