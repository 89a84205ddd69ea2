"""Candidate retrieval, immutable mining runs, rule preview and run diffs.

A run stores every candidate to ``depth`` (kept or not) with its rank, score, the query's weakest positive score,
BM25 score and the rule's verdict, so any later rule change, review or risk score is answered from the table.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from core import audit, cross_encoder, labels, roles, rules, run_stats
from core.encoders import Encoder, load_encoder
from core.engines import check_engine
from core.errors import UserError
from core.index import encode_and_search_chunks, exact_scores
from core.jobs import Job, StageClock, shared_job
from core.lexical import Bm25Builder
from core.lookups import (
    document_texts,
    positives_by_query,
    require_dataset,
    require_run,
    snippet,
)
from core.rules import RuleSpec
from core.run_import import require_scores

if TYPE_CHECKING:
    from core.jobs import StageProgress
    from core.store import Store
    from core.workspace import Workspace

DOCUMENT_CHUNK = 50_000  # documents read, encoded and tokenised per step: bounds the texts held at once


@dataclass
class MineResult:
    run_id: str
    queries: int
    candidates: int
    kept: int
    short_queries: int
    encoded: int
    cached: int
    seconds: float
    index: dict = field(default_factory=dict)  # what the dense search used (``DenseHits.index``); empty if none ran

    def to_dict(self) -> dict:
        return {"run": self.run_id, **{k: v for k, v in asdict(self).items() if k != "run_id"}}


def new_run_id(dataset: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{dataset}-{stamp}-{uuid.uuid4().hex[:6]}"


def describe_index(index: dict) -> str:
    """The dense search of a run in words, e.g. for the CLI: exact, or which IVF and the recall it measured."""
    if index.get("kind") not in {"ivf", "ivf-sq8"}:
        return "exact search" if index.get("kind") == "flat" else ""
    name = {"ivf": "IVF", "ivf-sq8": "IVF over 8-bit vectors"}[index["kind"]]
    probes = (f"{name} needed {index['nprobe']} of {index['nlist']} lists for recall@{index['k']} "
              f"{index['sample_recall']:.3f} on {index['sample_queries']} sampled queries")
    if index.get("searched") == "exact":
        return f"exact search, streamed: {probes}, slower than brute force there"
    return f"{probes} against exact search"


def candidates_for(encoder: Encoder, store: Store, dataset: str, queries: pd.DataFrame,
                   positives: dict[str, list[str]], depth: int, bm25_depth: int = 0,
                   stage: StageProgress | None = None, scratch: Path | None = None) -> tuple[pd.DataFrame, dict]:
    """Top-``depth`` non-positive candidates per query by dense score, optionally unioned with BM25's top, and
    what the dense search used (``DenseHits.index``: the index kind, and for IVF its probes and measured recall).

    The corpus is read from the store, encoded and tokenised chunk by chunk in one pass, so memory holds the
    index, the BM25 weights and the ids, never the texts. Columns: query_id, doc_id, rank (1 = best
    non-positive), score, pos_score (min over positives), bm25; queries without a positive in the corpus get none.
    """
    stage = stage or (lambda msg, frac: None)
    doc_ids: list[str] = []
    lexical = Bm25Builder()

    def document_chunks() -> Iterator[list[str]]:
        for frame in store.iter_documents(dataset, DOCUMENT_CHUNK):
            texts = document_texts(frame)
            doc_ids.extend(frame["doc_id"].tolist())
            lexical.add(texts)
            yield texts

    query_ids, query_texts = queries["query_id"].tolist(), queries["text"].tolist()
    max_pos = max((len(v) for v in positives.values()), default=0)
    with encode_and_search_chunks(encoder, document_chunks(), store.document_count(dataset), query_texts,
                                  depth + max_pos, stage=stage, scratch=scratch) as hits:
        stage("lexical scores", 0.9)
        bm25 = lexical.build()
        n_docs = max(len(doc_ids), 1)
        pos_q, pos_docs = _positive_pairs(query_ids, positives)
        pos_d = pd.Index(doc_ids).get_indexer(pos_docs)
        pos_q, pos_d = pos_q[pos_d >= 0], pos_d[pos_d >= 0]
        pos_keys = pos_q * n_docs + pos_d
        has_pos = np.zeros(len(query_ids), dtype=bool)
        has_pos[pos_q] = True

        ids, scores = hits.ids, hits.scores
        grid = np.broadcast_to(np.arange(len(ids))[:, None], ids.shape)
        keep = (ids >= 0) & has_pos[:, None] & ~np.isin(grid * n_docs + ids, pos_keys)
        keep &= np.cumsum(keep, axis=1) <= depth
        q_rows, d_rows, score = grid[keep], ids[keep], scores[keep]
        if bm25_depth:
            _, lexical_ids = bm25.search(query_texts, bm25_depth)
            extra_q = np.repeat(np.arange(len(lexical_ids)), lexical_ids.shape[1])
            extra_d = lexical_ids.ravel()
            keys = extra_q * n_docs + extra_d
            new = has_pos[extra_q] & ~np.isin(keys, pos_keys) & ~np.isin(keys, q_rows * n_docs + d_rows)
            extra_q, extra_d = extra_q[new], extra_d[new]
            q_rows, d_rows = np.concatenate([q_rows, extra_q]), np.concatenate([d_rows, extra_d])
            score = np.concatenate([score, exact_scores(hits.doc_vecs, hits.query_vecs, extra_q, extra_d)])
        order = np.lexsort((-score, q_rows))  # by query, best first; stable, so dense order breaks ties
        q_rows, d_rows, score = q_rows[order], d_rows[order], score[order]
        rank = np.arange(len(q_rows)) - np.searchsorted(q_rows, q_rows, side="left") + 1
        pos_score = np.full(len(query_ids), np.inf, dtype=np.float32)
        np.minimum.at(pos_score, pos_q, exact_scores(hits.doc_vecs, hits.query_vecs, pos_q, pos_d))
    lexical_scores = bm25.pair_scores(bm25.query_matrix(query_texts), q_rows, d_rows)
    stage("done", 1.0)
    return pd.DataFrame({
        "query_id": np.asarray(query_ids, dtype=object)[q_rows],
        "doc_id": np.asarray(doc_ids, dtype=object)[d_rows],
        "rank": rank.astype(np.int64),
        "score": score.astype(float),
        "pos_score": pos_score[q_rows].astype(float),
        "bm25": lexical_scores.astype(float),
    }), hits.index


def _positive_pairs(query_ids: list[str], positives: dict[str, list[str]]) -> tuple[np.ndarray, list[str]]:
    """(query row, positive doc id) for every labelled positive of the given queries."""
    rows = [(qi, doc) for qi, query_id in enumerate(query_ids) for doc in positives.get(query_id, [])]
    return np.asarray([r for r, _ in rows], dtype=np.int64), [d for _, d in rows]


def mine(store: Store, workspace: Workspace, dataset: str, split: str = "train", model: str | None = None,
         depth: int = 100, spec: RuleSpec | None = None, bm25_depth: int = 0, precision: str = "auto",
         query_prompt: str | None = None, document_prompt: str | None = None,
         stage: StageProgress | None = None, device: str = "auto", engine: str = "local") -> MineResult:
    """Mine a dataset split into a new immutable run and return its counts.

    False-negative risk is not scored here: it costs more than a warm mine (TF-IDF, neighbour queries, BM25
    agreement) and only reviewing needs it, so ``core.risk.ensure_risk`` scores a run the first time it is opened.
    Admins only, once accounts exist (core.roles).
    """
    roles.require(roles.RUNS)
    started = time.perf_counter()
    spec = spec or RuleSpec()
    require_dataset(store, dataset)
    if spec.reads():  # refused before any encoding: the scores a teacher rule reads exist only for a saved run
        teacher = ", ".join(f.name for f, _ in spec.active_filters() if f.reads)
        raise UserError(f"rule {teacher} reads cross-encoder scores, which exist only once a run is mined: mine with "
                        "another rule, score the run (`python -m core score --run RUN --cross-encoder DIR`), then "
                        f"`python -m core rerule --run RUN --rule {teacher.split(', ')[0]}`")
    if depth < 1 or depth > 10_000:
        raise UserError("--depth must be between 1 and 10000")
    positives = positives_by_query(store, dataset, split)
    if not positives:
        splits = store.splits(dataset)
        raise UserError(f"dataset {dataset!r} has no positive qrels in split {split!r} (splits: {splits})")
    check_engine(engine)
    clock = StageClock(stage)
    clock("loading model", 0.0)
    encoder = load_encoder(model, cache_dir=workspace.embeddings_dir, precision=precision,
                           query_prompt=query_prompt, document_prompt=document_prompt, device=device)
    queries = store.queries(dataset, list(positives))
    engine_encoded = _fill_cache_with(engine, encoder, store, dataset, queries, clock)
    candidates, index = candidates_for(encoder, store, dataset, queries, positives, depth, bm25_depth, clock,
                                       scratch=workspace.embeddings_dir)
    clock("rules", 1.0)
    candidates = rules.apply(spec, candidates, judged_mask(store, dataset, candidates, spec))
    summary = rules.summarise(candidates, spec, queries["query_id"].tolist())
    clock.lap(None)
    run_id = new_run_id(dataset)
    seconds = time.perf_counter() - started
    stats = {**summary, "encoded": encoder.stats.encoded, "cached": encoder.stats.cached, "engine": engine,
             "engine_encoded": engine_encoded,
             "encode_seconds": round(encoder.stats.seconds, 3), "seconds": round(seconds, 3),
             "stages": clock.seconds, "index": index, "device": encoder.device, "precision": encoder.precision,
             "bf16_cosine": encoder.bf16_cosine, "bf16_speedup": encoder.bf16_speedup}
    params = {"depth": depth, "bm25_depth": bm25_depth, "model_path": str(encoder.path),
              "query_prompt": query_prompt, "document_prompt": document_prompt, "rules": spec.to_dict()}
    store.save_run({"run_id": run_id, "dataset": dataset, "split": split, "model_fingerprint": encoder.fingerprint,
                    "params": params, "stats": stats}, candidates)
    run_stats.run_shape(store, run_id)  # stored now: the first page to open the run reads kilobytes, not the run
    audit.record(store, "mine", run_id, dataset=dataset, split=split, rule=spec.describe(), depth=depth)
    return MineResult(run_id, summary["queries"], summary["candidates"], summary["kept"],
                      summary["short_queries"], encoder.stats.encoded, encoder.stats.cached,
                      round(time.perf_counter() - started, 3), index)


def mine_job(store: Store, workspace: Workspace, dataset: str, split: str = "train", model: str | None = None,
             depth: int = 100, spec: RuleSpec | None = None, bm25_depth: int = 0, device: str = "auto",
             engine: str = "local") -> Job:
    """``mine`` in a background thread (``Job.result`` is its ``MineResult``), then the new run's risk scoring started
    as the shared job every page polls (``core.risk.scoring_job``). Mining a real corpus takes minutes: run in the
    page's script, any click on the page stopped it half-way, and the tab waited blind. The role is checked here,
    as the job's thread has no signed-in account."""
    from core.risk import scoring_job

    roles.require(roles.RUNS)

    def work(stage: StageProgress) -> MineResult:
        result = mine(store, workspace, dataset, split, model, depth, spec, bm25_depth, stage=stage, device=device,
                      engine=engine)
        scoring_job(store, workspace.root, result.run_id)  # started, not waited on: Review shows its progress
        return result

    return Job(f"mine:{dataset}:{split}:{uuid.uuid4().hex[:8]}", work)


def _fill_cache_with(engine: str, encoder: Encoder, store: Store, dataset: str, queries: pd.DataFrame,
                     stage: StageProgress) -> int:
    """Let a non-local engine encode what the cache lacks (documents streamed from the store, then queries), so
    the local pass that follows reads every vector from the cache; returns how many texts the engine encoded."""
    if engine == "local":
        return 0
    from core.ray_engine import fill_cache

    total = store.document_count(dataset)
    docs = (text for frame in store.iter_documents(dataset, DOCUMENT_CHUNK) for text in document_texts(frame))
    encoded = fill_cache(encoder, docs, encoder.document_prompt,
                         progress=lambda done, _: stage(f"encoding on {engine} {done}/{total}", 0.8 * done / total))
    return encoded + fill_cache(encoder, queries["text"].tolist(), encoder.query_prompt)


def _false_negative_pairs(store: Store, dataset: str) -> pd.DataFrame:
    """The (query_id, doc_id) pairs a person resolved as false negative for their query."""
    verdicts = labels.resolved(store, dataset)
    return verdicts[verdicts["label"] == "false_negative"]


def judged_mask(store: Store, dataset: str, candidates: pd.DataFrame, spec: RuleSpec) -> np.ndarray | None:
    """Which candidates a person resolved as false negative for their query (None when the rule ignores it)."""
    if not spec.skip_judged:
        return None
    flagged = _false_negative_pairs(store, dataset)
    keys = pd.MultiIndex.from_arrays([candidates["query_id"], candidates["doc_id"]])
    return keys.isin(pd.MultiIndex.from_arrays([flagged["query_id"], flagged["doc_id"]]))


def run_spec(run: dict) -> RuleSpec:
    """The rule a run was made with; stored parameters that no registered rule declares are refused, naming the run."""
    try:
        return RuleSpec.from_dict(run["params"]["rules"])
    except UserError as exc:
        raise UserError(f"run {run['run_id']}: stored rule: {exc}") from None


PREVIEW_COLUMNS = ["query_id", "rank", "score", "pos_score", "kept"]  # what every rule reads, and the old flags


def _rule_frame(table: pa.Table) -> pd.DataFrame:
    """``run_columns`` as the frame ``rules.apply`` takes, ids as categoricals over their codes (no string per row)."""
    columns = {}
    for name in table.column_names:
        if pa.types.is_dictionary(table.schema.field(name).type):
            codes, values = run_stats.codes(table, name)
            columns[name] = pd.Categorical.from_codes(codes, categories=values.to_pylist(), validate=False)
        else:
            columns[name] = table[name].to_numpy()
    return pd.DataFrame(columns, copy=False)  # nothing writes to these arrays; copying 10M rows cost a quarter second


@dataclass
class Preview:
    """What a rule change would do to a run, computed from its stored candidates."""

    run_id: str
    spec: RuleSpec
    candidates: pd.DataFrame  # query_id (categorical), rank, score, pos_score, the new kept/rule, kept_before
    per_query: pd.DataFrame  # query_id, kept_before, kept_after
    summary: dict
    margins: run_stats.Bins  # s − s_P of the candidates kept and dropped under the new rule
    ce: run_stats.Bins | None = None  # the cross-encoder p of the kept and dropped ones, when a teacher scored the run

    @property
    def flips(self) -> pd.DataFrame:
        c = self.candidates
        return c[c["kept"] != c["kept_before"]]

    @property
    def short_queries(self) -> pd.DataFrame:
        """The queries that keep fewer than k negatives under the new rule (rows of ``per_query``)."""
        return self.per_query[self.per_query["kept_after"] < self.spec.num_negatives]

    def flip_table(self, store: Store, limit: int) -> pd.DataFrame:
        """The first ``limit`` flips as the Mine page lists them: ids, rank, score, margin, old and new reason (the
        document ids and old reasons are read by the (run, query) index for the queries shown only)."""
        flips = self.flips.head(limit)
        shown = pd.DataFrame({"query": flips["query_id"].astype(str).to_numpy(), "rank": flips["rank"].to_numpy(),
                              "score": flips["score"].round(3).to_numpy(),
                              "s − s_P": (flips["score"] - flips["pos_score"]).round(3).to_numpy(),
                              "preview": flips["rule"].to_numpy()})
        if "ce" in flips:
            shown.insert(4, "ce p", flips["ce"].round(3).to_numpy())
        stored = pd.concat([store.candidates(self.run_id, query_id, with_signals=False, with_risk=False)
                            for query_id in shown["query"].unique()] or [pd.DataFrame(columns=["query_id"])])
        stored = stored.rename(columns={"query_id": "query", "doc_id": "document", "rule": "now"})
        shown = shown.merge(stored[["query", "rank", "document", "now"]], on=["query", "rank"], how="left")
        return shown[["query", "document", "rank", "score", "s − s_P", *["ce p"] * ("ce" in flips), "now",
                      "preview"]]

    @property
    def survivors(self) -> pd.DataFrame:
        """Queries per number of kept negatives, before and after (``run_stats.survivors``)."""
        return run_stats.survivors(self.per_query["kept_before"].to_numpy(), self.per_query["kept_after"].to_numpy())


_PREVIEWS: OrderedDict[tuple, Preview] = OrderedDict()
_PREVIEWS_LOCK = threading.Lock()
PREVIEWS_KEPT = 2  # previews kept per process (~300 MB each at 10M candidates)


def preview(store: Store, run_id: str, spec: RuleSpec, as_stored: bool = True) -> Preview:
    """``compute_preview``, kept for the process: the Mine page reruns on every widget, and a rerun that leaves the
    rule alone must not apply it to 10M candidates again. The key holds everything a preview reads that can change
    (the verdicts a skip-judged rule avoids, the cross-encoder scores); callers must not modify the result.

    The run's own rule (what the Mine page opens on) is ``stored_preview`` when ``as_stored``: the run as it is,
    from its stored shape, instead of applying the rule to every candidate again to find that nothing changes."""
    teacher = store.run_teacher(run_id)
    stored = as_stored and teacher is None and not spec.skip_judged and spec == run_spec(require_run(store, run_id))
    judged = store.scalar("SELECT MAX(id) FROM label_events") if spec.skip_judged else None
    key = (str(store.path), run_id, json.dumps(spec.to_dict(), sort_keys=True), judged,
           json.dumps(teacher, sort_keys=True, default=str), stored)
    with _PREVIEWS_LOCK:
        if key in _PREVIEWS:
            _PREVIEWS.move_to_end(key)
            return _PREVIEWS[key]
    result = stored_preview(store, run_id, spec) if stored else compute_preview(store, run_id, spec)
    with _PREVIEWS_LOCK:
        _PREVIEWS[key] = result
        while len(_PREVIEWS) > PREVIEWS_KEPT:
            _PREVIEWS.popitem(last=False)
    return result


def compute_preview(store: Store, run_id: str, spec: RuleSpec) -> Preview:
    """Apply ``spec`` to the run's stored candidates, read from its snapshot as the few columns rules read, ids as
    categoricals (no string per candidate), and count what changes. Document ids are read only when the rule
    needs them: sampling selectors hash (query, document), skipping judged pairs matches them. A run a
    cross-encoder scored gets its stored probabilities as columns ``ce`` and ``ce_pos`` (the ce rules read them;
    the preview charts them); a rule that reads them on a run without is a UserError saying to score it first."""
    run = require_run(store, run_id)
    require_scores(run, spec)
    needs_docs = spec.selector.samples or spec.skip_judged
    table = store.run_columns(run_id, PREVIEW_COLUMNS + ["doc_id"] * needs_docs)
    before = _rule_frame(table)
    if spec.reads() or store.run_teacher(run_id) is not None:
        before = before.assign(**cross_encoder.rule_columns(store, run_id))
    judged = run_stats.pair_mask(table, _false_negative_pairs(store, run["dataset"])) if spec.skip_judged else None
    after = rules.apply(spec, before.drop(columns=["kept"]), judged)
    after["kept_before"] = before["kept"].to_numpy(dtype=bool)
    ids, starts = _query_ids(table)
    per_query = _per_query(ids, run_stats.per_query_sum(after["kept_before"].to_numpy(), starts),
                           run_stats.per_query_sum(after["kept"].to_numpy(), starts))
    summary = _summary(per_query, len(after), spec, run_spec(run),
                       added=int((after["kept"] & ~after["kept_before"]).sum()),
                       removed=int((~after["kept"] & after["kept_before"]).sum()))
    margins = run_stats.kept_margins(after["score"].to_numpy(), after["pos_score"].to_numpy(),
                                     after["kept"].to_numpy())
    ce = None
    if "ce" in after:
        kept, p = after["kept"].to_numpy(), after["ce"].to_numpy()
        ce = run_stats.histogram({"kept": p[kept], "dropped": p[~kept]})
    return Preview(run_id, spec, after, per_query, summary, margins, ce)


def stored_preview(store: Store, run_id: str, spec: RuleSpec) -> Preview:
    """The preview of the rule the run was made with, which changes nothing: its counts and margins from the run's
    stored shape (``run_stats.run_shape``) and its query ids from one snapshot column, no flips. What
    ``compute_preview`` gives for that rule (the same numbers, a test compares them), in a tenth of the time at 10M
    candidates: the Mine page's first render. Not for a rule that skips judged pairs (verdicts given since the run
    was made change it) or reads a cross-encoder's scores (the preview then charts them)."""
    shape = run_stats.run_shape(store, run_id)
    ids, _ = _query_ids(store.run_columns(run_id, ["query_id"]))
    per_query = _per_query(ids, shape.kept_per_query, shape.kept_per_query)
    candidates = pd.DataFrame({"query_id": pd.Categorical([]), **{c: pd.Series(dtype=t) for c, t in (
        ("rank", np.int64), ("score", float), ("pos_score", float), ("kept", bool), ("rule", object),
        ("kept_before", bool))}})
    summary = _summary(per_query, shape.candidates, spec, spec, added=0, removed=0)
    return Preview(run_id, spec, candidates, per_query, summary, shape.margins)


def _query_ids(table: pa.Table) -> tuple[list[str], np.ndarray]:
    """The run's query ids in snapshot order and the row where each query's candidates start."""
    query, query_values = run_stats.codes(table, "query_id")
    starts = run_stats.query_starts(query)
    return query_values.take(query[starts]).to_pylist(), starts


def _per_query(ids: list[str], kept_before: np.ndarray, kept_after: np.ndarray) -> pd.DataFrame:
    per_query = pd.DataFrame({"query_id": ids, "kept_before": kept_before, "kept_after": kept_after})
    return per_query.sort_values("query_id", kind="stable").reset_index(drop=True)


def _summary(per_query: pd.DataFrame, candidates: int, spec: RuleSpec, made_with: RuleSpec, added: int,
             removed: int) -> dict:
    """``rules.summary_of`` under the previewed rule, with what changes against the run (made with ``made_with``)."""
    summary = rules.summary_of(per_query["kept_after"].to_numpy(), candidates, spec)
    summary.update(added=added, removed=removed, kept_before=int(per_query["kept_before"].sum()),
                   short_queries_before=int((per_query["kept_before"] < made_with.num_negatives).sum()))
    return summary


def derive_run(store: Store, run_id: str, spec: RuleSpec, previewed: Preview | None = None,
               stage: StageProgress | None = None) -> MineResult:
    """Commit a rule change as a new run that reuses the parent's candidates: no encoding, no search.

    Pass the ``Preview`` the user just looked at to commit it without recomputing it. Only the new kept/rule
    columns travel through Python; scores, BM25 and risk stay the base run's rows. Admins only, once accounts
    exist (core.roles).
    """
    roles.require(roles.RUNS)
    started = time.perf_counter()
    stage = stage or (lambda message, fraction: None)
    parent = require_run(store, run_id)
    if previewed is None or previewed.spec != spec or previewed.run_id != run_id or previewed.candidates.empty:
        stage("applying the rule to the stored candidates", 0.05)
        previewed = preview(store, run_id, spec, as_stored=False)  # the decisions themselves, not a stored count
    stage("saving the new run's decisions", 0.5)
    candidates = previewed.candidates
    new_id = new_run_id(parent["dataset"])
    params = {**parent["params"], "rules": spec.to_dict()}
    seconds = round(time.perf_counter() - started, 3)
    stats = {**rules.summarise(candidates, spec), "encoded": 0, "cached": 0, "seconds": seconds,
             "precision": parent["stats"].get("precision"), "derived_from": run_id}
    if spec.reads():  # which cross-encoder's scores the rule read (the base run may be scored again later)
        stats["cross_encoder"] = store.run_teacher(run_id)["model"]
    store.save_derived_run({"run_id": new_id, "dataset": parent["dataset"], "split": parent["split"],
                            "model_fingerprint": parent["model_fingerprint"], "params": params, "stats": stats,
                            "parent_run": run_id}, candidates[["query_id", "kept", "rule"]])
    stage("summarising the new run", 0.8)
    run_stats.run_shape(store, new_id)
    audit.record(store, "rerule", new_id, parent=run_id, rule=spec.describe())
    stage("saved", 1.0)
    return MineResult(new_id, stats["queries"], stats["candidates"], stats["kept"], stats["short_queries"],
                      0, 0, round(time.perf_counter() - started, 3))


def derive_job(store: Store, run_id: str, spec: RuleSpec) -> Job:
    """``derive_run`` in a background thread, one per run and rule in the process: a page polls its progress
    instead of blocking for seconds on a 10M-candidate run, and a second session committing the same rule waits
    on the first one's job. ``Job.result`` is the ``MineResult``. The role is checked here: the job's thread has no
    signed-in account."""
    roles.require(roles.RUNS)
    name = f"derive:{run_id}:{json.dumps(spec.to_dict(), sort_keys=True)}"
    return shared_job(name, lambda stage: derive_run(store, run_id, spec, stage=stage))


DIFF_CHANGES = ("appears", "disappears", "rank changed", "same")
DIFF_WORDS = {"appears": "appear (kept only in B)", "disappears": "disappear (kept only in A)",
              "rank changed": "change rank", "same": "stay the same"}  # "negatives that …", as a page says it
_DIFF_COLUMNS = ["query_id", "doc_id", "rank_a", "score_a", "rank_b", "score_b", "change"]


@dataclass
class RunDiff:
    """How the kept negatives of run B differ from run A's."""

    totals: pd.Series  # negatives per change, every one of DIFF_CHANGES listed (zeros included)
    rows: pd.DataFrame  # one row per (query, doc) that changed (and the unchanged ones when asked), _DIFF_COLUMNS
    # plus ce (the cross-encoder's p) before change when a teacher scored either run

    @property
    def per_query(self) -> pd.DataFrame:
        """Per query, how many negatives made each change other than ``same`` (a column per change that occurs)."""
        changed = self.rows[self.rows["change"] != "same"]
        return changed.groupby(["query_id", "change"]).size().unstack(fill_value=0)

    def table(self, store: Store, dataset: str, limit: int) -> pd.DataFrame:
        """The first ``limit`` changed negatives as the Mine page lists them: query and document ids, the change,
        rank and score as "A → B" with "—" where a run does not keep the pair (a blank cell would read as missing
        data, when it means the pair appears or disappears), then short texts of the query and the document."""
        rows = self.rows.head(limit)
        queries = store.queries(dataset, rows["query_id"].unique().tolist()).set_index("query_id")["text"]
        docs = store.documents(dataset, rows["doc_id"].unique().tolist())
        doc_text = dict(zip(docs["doc_id"], document_texts(docs)))

        def arrow(a: pd.Series, b: pd.Series, form: str) -> list[str]:
            return [" → ".join("—" if pd.isna(v) else format(v, form) for v in pair) for pair in zip(a, b)]

        out = pd.DataFrame({"query": rows["query_id"].to_numpy(), "document": rows["doc_id"].to_numpy(),
                            "change": rows["change"].to_numpy(),
                            "rank A → B": arrow(rows["rank_a"], rows["rank_b"], ".0f"),
                            "score A → B": arrow(rows["score_a"], rows["score_b"], ".3f")})
        if "ce" in rows:
            out["ce p"] = rows["ce"].round(3).to_numpy()
        return out.assign(**{"query text": [snippet(queries.get(q, ""), 60) for q in rows["query_id"]],
                             "document text": [snippet(doc_text.get(d, ""), 80) for d in rows["doc_id"]]})


def _kept(store: Store, run_id: str) -> pa.Table:
    """The run's kept candidates: query_id, doc_id (decoded for these rows only), rank, score."""
    table = store.run_columns(require_run(store, run_id)["run_id"], ["query_id", "doc_id", "rank", "score", "kept"])
    table = table.filter(table["kept"])
    return pa.table({"query_id": table["query_id"].cast(pa.string()), "doc_id": table["doc_id"].cast(pa.string()),
                     "rank": table["rank"], "score": table["score"]})


def _pair_keys(a: pa.Table, b: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """One int64 key per (query_id, doc_id) row of each table, equal across the tables for equal pairs."""
    keys = []
    for column in ("query_id", "doc_id"):
        encoded = pa.concat_arrays([a[column].combine_chunks(), b[column].combine_chunks()]).dictionary_encode()
        keys.append((encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), len(encoded.dictionary)))
    (query, _), (doc, docs) = keys
    key = query * docs + doc
    return key[:a.num_rows], key[a.num_rows:]


def _strings(table: pa.Table, column: str, rows: np.ndarray) -> np.ndarray:
    return table[column].take(pa.array(rows, type=pa.int64())).to_numpy(zero_copy_only=False)


def compare_runs(store: Store, run_a: str, run_b: str, same: bool = False) -> RunDiff:
    """Kept negatives that appear, disappear or change rank from run A to run B, matched on integer keys; only
    the rows that changed (and, with ``same``, the unchanged ones) become Python strings."""
    a, b = _kept(store, run_a), _kept(store, run_b)
    keys_a, keys_b = _pair_keys(a, b)
    in_b = pd.Index(keys_b).get_indexer(keys_a)
    both = in_b >= 0
    rank_a, rank_b = a["rank"].to_numpy(), b["rank"].to_numpy()
    score_a, score_b = a["score"].to_numpy(), b["score"].to_numpy()
    moved = both.copy()
    moved[both] = rank_a[both] != rank_b[in_b[both]]
    matched_b = np.zeros(b.num_rows, dtype=bool)
    matched_b[in_b[both]] = True
    totals = pd.Series({"appears": int((~matched_b).sum()), "disappears": int((~both).sum()),
                        "rank changed": int(moved.sum()), "same": int((both & ~moved).sum())})
    shown_a = np.flatnonzero(~both | moved | same)  # A's rows that disappear or move (and stay, when asked)
    shown_b = np.flatnonzero(~matched_b)  # rows only B keeps
    pair = in_b[shown_a]
    paired = pair >= 0
    from_a = pd.DataFrame({
        "query_id": _strings(a, "query_id", shown_a), "doc_id": _strings(a, "doc_id", shown_a),
        "rank_a": rank_a[shown_a], "score_a": score_a[shown_a],
        "rank_b": np.where(paired, rank_b[np.maximum(pair, 0)], np.nan) if len(rank_b) else np.nan,
        "score_b": np.where(paired, score_b[np.maximum(pair, 0)], np.nan) if len(score_b) else np.nan,
        "change": np.where(~paired, "disappears", np.where(moved[shown_a], "rank changed", "same"))})
    from_b = pd.DataFrame({
        "query_id": _strings(b, "query_id", shown_b), "doc_id": _strings(b, "doc_id", shown_b),
        "rank_a": np.nan, "score_a": np.nan, "rank_b": rank_b[shown_b], "score_b": score_b[shown_b],
        "change": "appears"})
    rows = pd.concat([frame for frame in (from_a, from_b) if len(frame)] or [from_a], ignore_index=True)
    rows = rows.sort_values(["query_id", "change", "rank_b", "rank_a"]).reset_index(drop=True)
    rows = rows[_DIFF_COLUMNS]
    ce = None
    for run_id in (run_b, run_a):  # the teacher's p of each pair shown (stored per pair: either run's teacher)
        scores = cross_encoder.pair_scores(store, run_id, rows["query_id"], rows["doc_id"])
        if scores is not None:
            ce = scores if ce is None else np.where(np.isnan(ce), scores, ce)
    if ce is not None:
        rows.insert(len(_DIFF_COLUMNS) - 1, "ce", ce)
    return RunDiff(totals.reindex(list(DIFF_CHANGES)), rows)


def diff_runs(store: Store, run_a: str, run_b: str) -> pd.DataFrame:
    """Kept negatives that appear, disappear or change rank between two runs, one row per (query, doc), the
    unchanged ones included (what the ``diff`` command prints from)."""
    return compare_runs(store, run_a, run_b, same=True).rows
