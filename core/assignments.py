"""Assignments: an admin splits a run's queries among named annotators, each query judged by ``overlap`` of them.

Five annotators who all start at the first query duplicate each other's work and leave the end of the run
unjudged; splitting the queries gives each person their own share, and an overlap k ≥ 2 gives every query k
independent verdicts, which is what agreement (core.agreement: κ and α over the items two or more people judged)
needs. The split is deterministic (the same run, names, overlap and seed give the same shares), balanced (shares
differ by at most one query) and mixes the pairs of people who share queries, so κ exists for many pairs rather
than for fixed teams: the queries are shuffled by the seed, and each takes the k people with the fewest queries
so far, ties broken by a seeded draw.

A person with an assignment on a run sees only their share on Review (the query list and the triage queue, in
the queue's own order: ``RunOutline.subset``); anyone else, and every run without assignments, sees the whole
run as before. Assigning replaces the run's previous split; verdicts are never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core import audit, labels, roles
from core.errors import UserError
from core.lookups import require_run
from core.review import RunOutline, run_outline

if TYPE_CHECKING:
    from core.store import Store


@dataclass(frozen=True)
class Plan:
    """A run's split: who, each query judged by ``overlap`` of them, drawn with ``seed``; set when and by whom."""

    run_id: str
    annotators: list[str]
    overlap: int
    seed: int
    created_at: str
    created_by: str


@dataclass(frozen=True)
class Progress:
    """How far a run's split got, over its kept candidates (Review's default scope).

    ``people``: per annotator, queries and kept candidates in their share, how many of those they judged, the
    ratio and how many of their queries they completed. ``reached``: how many kept candidates have verdicts from
    ``overlap`` of their assignees, of ``candidates``; ``by_count[i]``: candidates judged by i assignees (the
    last entry: ``overlap`` or more)."""

    overlap: int
    candidates: int
    reached: int
    by_count: list[int]
    people: pd.DataFrame


def parse_names(text: str) -> list[str]:
    """Comma-separated annotator names (``a,b,c``; spaces around commas are ignored) as a list."""
    return [name.strip() for name in text.split(",") if name.strip()]


def _check(annotators: Sequence[str], overlap: int) -> list[str]:
    names = [labels.check_annotator(name) for name in annotators]
    if not names:
        raise UserError("name at least one annotator")
    if doubles := sorted({n for n in names if names.count(n) > 1}):
        raise UserError(f"annotator named twice: {', '.join(doubles)}")
    if llm := [n for n in names if labels.is_llm(n)]:
        raise UserError(f"{llm[0]!r} is an LLM judge: assign queries to people (`judge` takes the queue itself)")
    if not 1 <= overlap <= len(names):
        raise UserError(f"overlap must be between 1 and the number of annotators ({len(names)}), not {overlap}")
    return names


def split(query_ids: Sequence[str], annotators: Sequence[str], overlap: int, seed: int = 0) -> dict[str, list[str]]:
    """Each annotator's queries (sorted by id): every query goes to ``overlap`` distinct annotators, loads differ by
    at most one, and the result depends only on the set of queries, the names in order, the overlap and the seed."""
    names = _check(annotators, overlap)
    rng = np.random.default_rng(seed)
    queries = sorted(set(query_ids))
    order = rng.permutation(len(queries))
    load = np.zeros(len(names), dtype=np.int64)
    shares: dict[str, list[str]] = {name: [] for name in names}
    ties = rng.random((len(queries), len(names)))
    for step, at in enumerate(order):
        chosen = np.lexsort((ties[step], load))[:overlap]  # fewest queries first, ties by the seeded draw
        load[chosen] += 1
        for person in chosen:
            shares[names[person]].append(queries[at])
    return {name: sorted(own) for name, own in shares.items()}


def assign(store: Store, run_id: str, annotators: Sequence[str], overlap: int, seed: int = 0) -> Plan:
    """Split the run's queries (``split``) and store it, replacing the run's earlier split. Admins only."""
    roles.require(roles.ASSIGN)
    require_run(store, run_id)
    names = _check(annotators, int(overlap))
    if store.has_accounts():  # a team workspace: a share for a name nobody can sign in as would never be judged
        unknown = [name for name in names if store.account_row(name) is None]
        if unknown:
            raise UserError(f"no account named {', '.join(map(repr, unknown))}: assign queries to accounts of "
                            "this workspace (`users list`)")
    queries = run_outline(store, run_id).queries["query_id"].tolist()
    if not queries:
        raise UserError(f"run {run_id!r} has no candidates to assign")
    shares = split(queries, names, int(overlap), int(seed))
    store.set_assignments(run_id, names, int(overlap), int(seed), audit.who(),
                          ((name, query) for name, own in shares.items() for query in own))
    audit.record(store, "assign", run_id, annotators=names, overlap=int(overlap), seed=int(seed),
                 queries={name: len(own) for name, own in shares.items()})
    return plan(store, run_id)


def clear(store: Store, run_id: str) -> bool:
    """Remove the run's split: everyone sees the whole run again. False when it had none. Admins only."""
    roles.require(roles.ASSIGN)
    require_run(store, run_id)
    cleared = store.clear_assignments(run_id)
    if cleared:
        audit.record(store, "unassign", run_id)
    return cleared


def plan(store: Store, run_id: str) -> Plan | None:
    row = store.assignment_plan(run_id)
    return Plan(**row) if row else None


def share(store: Store, run_id: str, annotator: str) -> list[str] | None:
    """The annotator's queries of the run, or None when the run has no split or it leaves them out: they see
    everything, as without assignments."""
    found = plan(store, run_id)
    if found is None or annotator not in found.annotators:
        return None
    return store.assigned_queries(run_id, annotator)


def shares(store: Store, run_id: str) -> dict[str, list[str]]:
    """Every assigned annotator's queries of the run (empty when it has no split)."""
    out: dict[str, list[str]] = {}
    for row in store.assignment_rows(run_id):
        out.setdefault(row["annotator"], []).append(row["query_id"])
    return out


def progress(store: Store, run_id: str, outline: RunOutline) -> Progress | None:
    """``Progress`` of the run's split (None without one), from ``outline`` (the run's ``run_outline``) and the
    assignees' current independent verdicts; a verdict outside a person's share counts for nobody's share."""
    found = plan(store, run_id)
    if found is None:
        return None
    dataset = require_run(store, run_id)["dataset"]
    names = found.annotators
    who_of = {name: i for i, name in enumerate(names)}
    assigned = np.zeros((len(names), len(outline.queries)), dtype=bool)
    for name, own in shares(store, run_id).items():
        at = [outline.position[q] for q in own if q in outline.position]
        if name in who_of:
            assigned[who_of[name], at] = True
    verdicts = labels.current(store, dataset, kind="verdict")
    verdicts = verdicts[verdicts["annotator"].isin(who_of)]
    rows = outline.pair_rows(verdicts["query_id"].tolist(), verdicts["doc_id"].tolist())
    person = verdicts["annotator"].map(who_of).to_numpy(dtype=np.int64)
    usable = rows >= 0
    rows, person = rows[usable], person[usable]
    usable = outline.kept[rows]
    rows, person = rows[usable], person[usable]
    query = np.searchsorted(outline.starts, rows, side="right") - 1
    mine = assigned[person, query]
    rows, person, query = rows[mine], person[mine], query[mine]
    kept = outline.queries["kept"].to_numpy(dtype=np.int64)
    per_person = []
    for i, name in enumerate(names):
        own = assigned[i]
        done = np.bincount(query[person == i], minlength=len(kept))
        candidates = int(kept[own].sum())
        judged = int(done[own].sum())
        per_person.append({"annotator": name, "queries": int(own.sum()), "candidates": candidates,
                           "judged": judged, "share": judged / candidates if candidates else float("nan"),
                           "complete": int(((done == kept) & own & (kept > 0)).sum())})
    judges = np.bincount(rows, minlength=len(outline.kept))[outline.kept & np.repeat(assigned.any(axis=0),
                                                                                        np.diff(outline.starts))]
    by_count = np.bincount(np.minimum(judges, found.overlap), minlength=found.overlap + 1)
    return Progress(found.overlap, int(len(judges)), int(by_count[found.overlap]), by_count.tolist(),
                    pd.DataFrame(per_person, columns=["annotator", "queries", "candidates", "judged", "share",
                                                      "complete"]))
