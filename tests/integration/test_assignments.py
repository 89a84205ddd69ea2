"""Assignments on the real mined fixture: a deterministic, balanced split; overlap 2 gives two people the same
queries, overlap 1 disjoint shares that together cover the run (query lists and triage queues alike); progress on
each share and the overlap reached; κ over the shared items only."""

from __future__ import annotations

from collections import Counter

import pytest

from core import agreement, assignments, labels, triage
from core.errors import UserError
from core.review import run_outline
from core.workspace import open_workspace


@pytest.fixture
def run(ws_root):
    ws = open_workspace(ws_root)
    store = ws.store()
    yield store, store.runs("tiny")[0]["run_id"]
    store.close()


def test_split_is_deterministic_balanced_and_covers_every_query_k_times():
    queries = [f"q{i:02d}" for i in range(25)]
    names = ["ana", "bob", "cy", "dee"]
    shares = assignments.split(queries, names, 2, seed=7)
    assert shares == assignments.split(list(reversed(queries)), names, 2, seed=7)  # input order does not matter
    assert shares != assignments.split(queries, names, 2, seed=8)
    loads = [len(own) for own in shares.values()]
    assert sum(loads) == 50 and max(loads) - min(loads) <= 1
    assert Counter(q for own in shares.values() for q in own) == {q: 2 for q in queries}
    teams = Counter(frozenset(n for n, own in shares.items() if q in own) for q in queries)
    assert len(teams) >= 4  # pairs are mixed, so κ exists for many pairs, not two fixed teams


@pytest.mark.parametrize("names, overlap, message", [
    ([], 1, "at least one annotator"), (["ana", "ana"], 1, "named twice"), (["ana", "bob"], 3, "between 1 and"),
    (["ana", "bob"], 0, "between 1 and"), (["ana", "llm:qwen"], 1, "LLM judge"), ([" ana"], 1, "spaces"),
])
def test_bad_splits_are_refused(names, overlap, message):
    with pytest.raises(UserError, match=message):
        assignments.split(["q1"], names, overlap)


def _queue(store, run_id: str, who: str, share) -> set[tuple[str, str]]:
    queue = triage.triage_queue(store, run_id, who, limit=10_000, share=share)
    return set(zip(queue["query_id"], queue["doc_id"]))


def test_overlap_2_same_queries_overlap_1_disjoint_queues_covering_the_run(run):
    store, run_id = run
    outline = run_outline(store, run_id)
    everything = set(outline.queries["query_id"])
    whole_queue = _queue(store, run_id, "ana", None)

    assignments.assign(store, run_id, ["ana", "bob"], overlap=2)
    ana, bob = (assignments.share(store, run_id, who) for who in ("ana", "bob"))
    assert set(ana) == set(bob) == everything
    assert _queue(store, run_id, "ana", outline.subset(ana)) == _queue(store, run_id, "bob", outline.subset(bob)) \
        == whole_queue

    assignments.assign(store, run_id, ["ana", "bob"], overlap=1)
    ana, bob = (assignments.share(store, run_id, who) for who in ("ana", "bob"))
    assert ana and bob and not set(ana) & set(bob) and set(ana) | set(bob) == everything
    queues = [_queue(store, run_id, who, outline.subset(own)) for who, own in (("ana", ana), ("bob", bob))]
    assert not queues[0] & queues[1] and queues[0] | queues[1] == whole_queue
    assert {q for q, _ in queues[0]} == set(ana)
    assert sum(triage.unjudged(store, run_id, who, outline.subset(own)) for who, own in (("ana", ana), ("bob", bob))) \
        == triage.unjudged(store, run_id, "ana") == len(whole_queue)
    assert assignments.share(store, run_id, "cy") is None  # not in the split: sees the whole run, as before

    assert assignments.clear(store, run_id) and assignments.share(store, run_id, "ana") is None
    assert not assignments.clear(store, run_id)


def test_share_outline_walks_only_the_share_in_run_order(run):
    store, run_id = run
    outline = run_outline(store, run_id)
    own = list(outline.queries["query_id"])[1::2]
    part = outline.subset(own)
    assert list(part.queries["query_id"]) == own
    assert part.neighbour(own[0], 1) == own[1] and part.neighbour(own[-1], 1) == own[-1]
    first = own[0]
    docs = outline.docs_of(first)
    assert part.pair_rows([first] * len(docs), docs).tolist() == list(range(len(docs)))
    start = int(outline.starts[outline.position[first]])
    assert part.kept[:len(docs)].tolist() == outline.kept[start:start + len(docs)].tolist()


def test_progress_on_each_share_and_the_overlap_reached(run):
    store, run_id = run
    assignments.assign(store, run_id, ["ana", "bob", "cy"], overlap=2, seed=3)
    outline = run_outline(store, run_id)
    kept_rows = {q: [d for d, k in zip(outline.docs_of(q), outline.kept[outline.starts[i]:outline.starts[i + 1]])
                     if k] for i, q in enumerate(outline.queries["query_id"])}
    shares = assignments.shares(store, run_id)
    both = sorted(set(shares["ana"]) & set(shares["bob"]))[0]
    for who in ("ana", "bob"):
        for doc in kept_rows[both]:
            labels.record(store, "tiny", both, doc, who, "true_negative")
    outside = next(q for q in kept_rows if q not in shares["cy"])
    labels.record(store, "tiny", outside, kept_rows[outside][0], "cy", "unsure")  # outside cy's share: not counted
    done = assignments.progress(store, run_id, outline)
    people = done.people.set_index("annotator")
    assert people.loc["ana", "judged"] == people.loc["bob", "judged"] == len(kept_rows[both])
    assert people.loc["cy", "judged"] == 0
    assert people.loc["ana", "complete"] == 1
    assert people["queries"].sum() == 2 * len(kept_rows)
    assert people.loc["ana", "candidates"] == sum(len(kept_rows[q]) for q in shares["ana"])
    assert done.candidates == sum(len(v) for v in kept_rows.values())
    assert done.reached == len(kept_rows[both]) and sum(done.by_count) == done.candidates


def test_kappa_counts_only_items_judged_by_both(run):
    store, run_id = run
    assignments.assign(store, run_id, ["ana", "bob"], overlap=1)
    ana, bob = (assignments.share(store, run_id, who) for who in ("ana", "bob"))
    outline = run_outline(store, run_id)
    shared = [(ana[0], d) for d in outline.docs_of(ana[0])[:2]]
    for q, d in shared:  # both judged these two (bob beyond his share)
        labels.record(store, "tiny", q, d, "ana", "false_negative")
        labels.record(store, "tiny", q, d, "bob", "false_negative" if d == shared[0][1] else "true_negative")
    labels.record(store, "tiny", bob[0], outline.docs_of(bob[0])[0], "bob", "true_negative")  # bob alone
    result = agreement.dataset_agreement(store, "tiny")
    assert result.items == 3 and result.shared_items == 2
    assert result.pairs.set_index(["a", "b"]).loc[("ana", "bob"), "items"] == 2


def test_a_team_workspace_assigns_only_to_its_accounts(run, cheap_hashes):
    from core import accounts

    store, run_id = run
    accounts.add(store, "ana", "annotator", "correct horse battery")
    with pytest.raises(UserError, match="no account named 'bob'"):
        assignments.assign(store, run_id, ["ana", "bob"], overlap=1)
    assert assignments.plan(store, run_id) is None
    accounts.add(store, "bob", "annotator", "correct horse battery")
    assert assignments.assign(store, run_id, ["ana", "bob"], overlap=1).annotators == ["ana", "bob"]
