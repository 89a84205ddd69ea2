"""Mining runs, their candidates and when their risk was last scored.

A mined run owns one candidate row per (query, document). A run derived from it by another rule owns only its
decisions (``run_decisions``: per query, which candidates it keeps and why) and reads everything else from its
``base_run``'s rows. A run's immutable columns are also kept as a Parquet snapshot beside the store, built on first
read (or when mined): whole-run reads such as a rule preview take it instead of a million-row SQL scan.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.store.connection import Connection, now, where

if TYPE_CHECKING:
    import pyarrow as pa


class RunTables(Connection):
    """Queries on runs, candidates and risk_scored."""

    @staticmethod
    def _insert_run(conn: sqlite3.Connection, run: dict[str, Any]) -> None:
        conn.execute("""INSERT INTO runs (run_id, dataset, split, model_fingerprint, params_json, created_at,
                        stats_json, parent_run, base_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                     (run["run_id"], run["dataset"], run["split"], run["model_fingerprint"],
                      json.dumps(run["params"], sort_keys=True), run.get("created_at") or now(),
                      json.dumps(run["stats"], sort_keys=True), run.get("parent_run"), run.get("base_run")))

    def save_run(self, run: dict[str, Any], candidates: pd.DataFrame) -> None:
        cols = ["query_id", "doc_id", "rank", "score", "pos_score", "bm25", "kept", "rule", "risk", "signals"]
        frame = candidates.reindex(columns=cols)

        def records() -> Iterator[tuple]:  # converted a slice at a time: a million rows never exist as tuples
            for start in range(0, len(frame), 50_000):
                part = frame.iloc[start:start + 50_000]
                part = part.astype(object).where(part.notna(), None)
                yield from ((run["run_id"], *row) for row in part.itertuples(index=False, name=None))

        def write(conn: sqlite3.Connection) -> None:
            self._insert_run(conn, run)
            if frame["risk"].notna().any():  # a run saved with its risk (an import, a benchmark) is scored
                conn.execute("INSERT INTO risk_scored (run_id, scored_at, signal_set) VALUES (?, ?, ?)",
                             (run["run_id"], now(), run.get("signal_set")))
            conn.executemany("INSERT INTO candidates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", records())
        self.write(write)
        self._write_snapshot(run["run_id"], frame)

    def save_derived_run(self, run: dict[str, Any], decisions: pd.DataFrame) -> None:
        """A run that re-rules its parent's candidates: ``decisions`` holds query_id, kept, rule per candidate in
        the parent's (query, rank) order. Stored as one row per query over the parent's base rows."""
        parent = self.run(run["parent_run"])
        if parent is None or len(decisions) != parent["stats"].get("candidates", len(decisions)):
            raise ValueError(f"derived run: {len(decisions)} decisions do not match run {run['parent_run']}")
        base = parent["base_run"] or parent["run_id"]
        query_ids = decisions["query_id"].to_numpy()
        kept = decisions["kept"].to_numpy(dtype=bool)
        codes, names = pd.factorize(decisions["rule"])
        names = np.asarray(names, dtype=object)
        starts = np.flatnonzero(np.r_[True, query_ids[1:] != query_ids[:-1]])
        stops = np.r_[starts[1:], len(query_ids)]
        rows = []
        for start, stop in zip(starts.tolist(), stops.tolist()):
            local, local_codes = np.unique(codes[start:stop], return_inverse=True)
            rows.append((run["run_id"], query_ids[start], np.packbits(kept[start:stop]).tobytes(),
                         local_codes.astype(np.uint8).tobytes(), json.dumps(names[local].tolist())))

        def write(conn: sqlite3.Connection) -> None:
            self._insert_run(conn, {**run, "base_run": base})
            conn.executemany("INSERT INTO run_decisions VALUES (?, ?, ?, ?, ?)", rows)
        self.write(write)

    @staticmethod
    def _decoded(row: dict[str, Any]) -> dict[str, Any]:
        """A runs row with its params and stats as dicts, as callers use them."""
        row["params"] = json.loads(row.pop("params_json"))
        row["stats"] = json.loads(row.pop("stats_json"))
        return row

    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = self.rows("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return self._decoded(rows[0]) if rows else None

    def runs(self, dataset: str | None = None) -> list[dict[str, Any]]:
        """Every run (or a dataset's), newest first, in one query."""
        clause, params = where({"dataset": dataset})
        return [self._decoded(row) for row in self.rows(f"SELECT * FROM runs{clause} ORDER BY created_at DESC",
                                                        params)]

    def rows_of(self, run_id: str) -> str:
        """The run whose candidate rows hold ``run_id``'s scores and risk: its base for a derived run, else itself."""
        return self.scalar("SELECT COALESCE(base_run, run_id) FROM runs WHERE run_id = ?", (run_id,)) or run_id

    def candidates(self, run_id: str, query_id: str | None = None, with_signals: bool = True,
                   with_risk: bool = True) -> pd.DataFrame:
        """A run's candidates in (query, rank, doc) order; ``with_signals=False`` skips the bulky risk-signal JSON and
        ``with_risk=False`` the risk too (a whole run then comes from its snapshot alone)."""
        rows_of = self.rows_of(run_id)
        if query_id is not None:
            frame = self.frame(f"""SELECT query_id, doc_id, rank, score, pos_score, bm25, kept, rule
                                   {", risk" if with_risk else ""}{", signals" if with_signals else ""}
                                   FROM candidates WHERE run_id = ? AND query_id = ? ORDER BY rank, doc_id""",
                               (rows_of, query_id))
        else:
            frame = self._snapshot(rows_of)
            extra = ["risk"] * with_risk + ["signals"] * with_signals
            if extra:
                mutable = self.frame(f"SELECT {', '.join(extra)} FROM candidates WHERE run_id = ? "
                                     "ORDER BY query_id, rank, doc_id", (rows_of,))
                for column in extra:
                    frame[column] = mutable[column].to_numpy()
        if rows_of != run_id:
            kept, rule = self._decisions(run_id, query_id)
            if len(kept) != len(frame):
                raise ValueError(f"run {run_id}: {len(kept)} decisions for {len(frame)} candidates of {rows_of}")
            frame["kept"], frame["rule"] = kept, rule
        frame["kept"] = frame["kept"].astype(bool)
        return frame

    def first_query(self, run_id: str) -> str | None:
        """The run's first query in id order, by the (run, query, rank) index: what a page opens on when none is
        chosen, without reading the run's ten million rows for it. None for a run without candidates."""
        return self.scalar("SELECT MIN(query_id) FROM candidates WHERE run_id = ?", (self.rows_of(run_id),))

    def _decisions(self, run_id: str, query_id: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """A derived run's kept flags and rule reasons, concatenated in (query, rank) order."""
        clause, params = where({"run_id": run_id, "query_id": query_id})
        kept, rules = [], []
        with self._environment():
            for kept_bits, codes, names in self.conn.execute(
                    f"SELECT kept, rules, rule_names FROM run_decisions{clause} ORDER BY query_id", params):
                codes = np.frombuffer(codes, dtype=np.uint8)
                kept.append(np.unpackbits(np.frombuffer(kept_bits, dtype=np.uint8), count=len(codes)).astype(bool))
                rules.append(np.asarray(json.loads(names), dtype=object)[codes])
        if not kept:
            return np.zeros(0, dtype=bool), np.zeros(0, dtype=object)
        return np.concatenate(kept), np.concatenate(rules)

    def _snapshot_path(self, run_id: str) -> Path:
        return self.run_file(run_id, "parquet")

    def run_file(self, run_id: str, suffix: str) -> Path:
        """Where something computed once from an immutable run is kept beside the store (its snapshot, its
        aggregates): ``snapshots/<run_id>.<suffix>``."""
        return self.path.parent / "snapshots" / f"{run_id}.{suffix}"

    _SNAPSHOT = ["query_id", "doc_id", "rank", "score", "pos_score", "bm25", "kept", "rule"]
    DOCS = "docs.parquet"  # a snapshot's distinct document ids; its rows hold ``doc_code``, an index into them

    def _write_snapshot(self, run_id: str, frame: pd.DataFrame) -> None:
        """Write a run's immutable columns atomically (temporary siblings renamed into place); a full or read-only
        disk only costs the speed-up, so it is not an error.

        Document ids are stored once each (``DOCS``) and the rows hold an int32 code: a reader gets the column as
        one dictionary array at once, where Parquet's own per-row-group dictionaries had to be unified (10M rows:
        77 dictionaries of ~200k ids, 1.5 s). The ids file is written first, so a snapshot never names a list of
        ids that is not there (a run's ids are the same on every write).
        """
        path, docs_path = self._snapshot_path(run_id), self.run_file(run_id, self.DOCS)
        tmp, tmp_docs = (p.with_name(f".{p.name}.{os.getpid()}.tmp") for p in (path, docs_path))
        try:
            path.parent.mkdir(exist_ok=True)
            frame = frame[self._SNAPSHOT].sort_values(["query_id", "rank", "doc_id"], kind="stable")
            codes, docs = pd.factorize(frame["doc_id"])
            pd.DataFrame({"doc_id": np.asarray(docs, dtype=object)}).to_parquet(tmp_docs, index=False)
            frame = frame.drop(columns="doc_id").assign(doc_code=codes.astype(np.int32),
                                                         kept=frame["kept"].astype(bool))
            frame.to_parquet(tmp, index=False)
            os.replace(tmp_docs, docs_path)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            tmp_docs.unlink(missing_ok=True)

    def _snapshot_docs(self, run_id: str) -> pa.Array:
        import pyarrow.parquet as pq

        return pq.read_table(self.run_file(run_id, self.DOCS))["doc_id"].combine_chunks()

    def run_columns(self, run_id: str, columns: Sequence[str]) -> pa.Table:
        """Some immutable columns of a run's candidates (``_SNAPSHOT`` names) in (query, rank, doc) order, read from
        its Parquet snapshot with the ids and rules dictionary-encoded (integer indices over the distinct values).

        Whole-run aggregates (counts per query, binned scores, previews) read 10M candidates this way as a few
        numeric arrays instead of 10M Python strings. A derived run's ``kept`` and ``rule`` are its own decisions.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        unknown = set(columns) - set(self._SNAPSHOT)
        if unknown:
            raise ValueError(f"not snapshot columns: {sorted(unknown)}")
        rows_of = self.rows_of(run_id)
        path = self._snapshot_path(rows_of)
        expected = self.scalar("SELECT json_extract(stats_json, '$.candidates') FROM runs WHERE run_id = ?",
                               (rows_of,))
        encoded = [c for c in columns if c in ("query_id", "doc_id", "rule")]
        table = None
        try:
            if path.exists():
                stored = pq.ParquetFile(path)
                coded = "doc_code" in stored.schema_arrow.names  # else an older snapshot with a doc_id column
                if expected is None or stored.metadata.num_rows == expected:
                    wanted = ["doc_code" if c == "doc_id" and coded else c for c in columns]
                    table = pq.read_table(path, columns=wanted,
                                          read_dictionary=[c for c in encoded if c != "doc_id" or not coded])
                    if coded and "doc_id" in columns:
                        docs = pa.DictionaryArray.from_arrays(table["doc_code"].combine_chunks(),
                                                              self._snapshot_docs(rows_of))
                        table = table.set_column(wanted.index("doc_code"), "doc_id", docs)
        except (OSError, ValueError, pa.ArrowException):
            table = None
        if table is None:  # no usable snapshot (read-only disk, foreign file): rebuilt, or read once from SQL
            frame = self._snapshot(rows_of)[list(columns)]
            table = pa.Table.from_pandas(frame, preserve_index=False)
            table = pa.table({c: table[c].dictionary_encode() if c in encoded else table[c] for c in columns})
        if rows_of != run_id and {"kept", "rule"} & set(columns):
            kept, rule = self._decisions(run_id)
            if len(kept) != len(table):
                raise ValueError(f"run {run_id}: {len(kept)} decisions for {len(table)} candidates of {rows_of}")
            derived = {"kept": pa.array(kept), "rule": pa.array(rule, type=pa.string()).dictionary_encode()}
            table = pa.table({c: derived.get(c, table[c]) for c in columns})
        return table

    def _snapshot(self, run_id: str) -> pd.DataFrame:
        """The run's own rows' immutable columns, from the snapshot when it matches the run (else rebuilt)."""
        import pyarrow as pa

        path = self._snapshot_path(run_id)
        expected = self.scalar("SELECT json_extract(stats_json, '$.candidates') FROM runs WHERE run_id = ?",
                               (run_id,))
        if path.exists():
            try:
                frame = pd.read_parquet(path)
                if "doc_code" in frame:
                    docs = self._snapshot_docs(run_id).to_pandas()
                    frame["doc_id"] = docs.take(frame.pop("doc_code").to_numpy()).reset_index(drop=True)
                    frame = frame[self._SNAPSHOT]
                if expected is None or len(frame) == expected:
                    return frame
            except (OSError, ValueError, IndexError, pa.ArrowException):
                pass  # damaged or foreign: rebuilt below
        frame = self.frame(f"SELECT {', '.join(self._SNAPSHOT)} FROM candidates WHERE run_id = ? "
                           "ORDER BY query_id, rank, doc_id", (run_id,))
        frame["kept"] = frame["kept"].astype(bool)
        if expected is not None and len(frame) == expected:
            self._write_snapshot(run_id, frame)
        return frame

    def candidate_pairs(self, dataset: str, query_id: str | None = None, doc_id: str | None = None) -> pd.DataFrame:
        """Distinct (query_id, doc_id) mined in any run of a dataset, optionally for one query or one document."""
        clause, params = where({"r.dataset": dataset, "c.query_id": query_id, "c.doc_id": doc_id})
        return self.frame(f"""SELECT DISTINCT c.query_id, c.doc_id
                              FROM candidates c JOIN runs r ON r.run_id = c.run_id{clause}
                              ORDER BY c.query_id, c.doc_id""", params)

    def risk_order(self, run_id: str, offset: int, limit: int, scored: bool = True) -> pd.DataFrame:
        """A page of a run's candidates riskiest first (ties by query, rank), read from the (run_id, risk) index
        with a LIMIT; ``scored=False``: the candidates without risk, in (query, rank) order. Columns: query_id,
        doc_id, rank, score, pos_score, risk, signals."""
        order = "risk DESC, query_id, rank, doc_id" if scored else "query_id, rank, doc_id"
        return self.frame(f"""SELECT query_id, doc_id, rank, score, pos_score, risk, signals FROM candidates
                              WHERE run_id = ? AND risk IS {"NOT " if scored else ""}NULL
                              ORDER BY {order} LIMIT ? OFFSET ?""",
                          (self.rows_of(run_id), int(limit), int(offset)))

    def mined_pairs(self, run_id: str, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Those (query_id, doc_id) pairs that are candidates of the run: one primary-key probe each."""
        pairs = json.dumps([[q, d] for q, d in pairs])
        with self._environment():
            found = self.conn.execute("""SELECT c.query_id, c.doc_id FROM json_each(?) AS p CROSS JOIN candidates AS c
                                         ON c.run_id = ? AND c.query_id = json_extract(p.value, '$[0]')
                                         AND c.doc_id = json_extract(p.value, '$[1]')""",
                                      (pairs, self.rows_of(run_id))).fetchall()
        return {(q, d) for q, d in found}

    def risk_missing(self, run_id: str, signal_set: str | None = None) -> bool:
        """Whether the run needs (re)scoring: never scored and some candidate lacks a risk, or scored by a set of
        signals other than ``signal_set``. One primary-key read for a run already scored by this set."""
        run_id = self.rows_of(run_id)
        scored = self.rows("SELECT signal_set FROM risk_scored WHERE run_id = ?", (run_id,))
        if not scored:
            return bool(self.scalar("SELECT EXISTS(SELECT 1 FROM candidates WHERE run_id = ? AND risk IS NULL)",
                                    (run_id,)))
        if signal_set is None or scored[0]["signal_set"] == signal_set:
            return False
        return bool(self.scalar("SELECT EXISTS(SELECT 1 FROM candidates WHERE run_id = ?)", (run_id,)))

    def set_risk(self, run_id: str, rows: Iterable[tuple[str, str, float, str]], signal_set: str | None = None) -> None:
        """Store (query_id, doc_id, risk, signals_json) scored by ``signal_set``; risk is derived data, the only
        candidate field updated. A derived run's risk is its base run's (the same candidate rows)."""
        run_id = self.rows_of(run_id)

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE candidates SET risk = ?, signals = ? WHERE run_id = ? AND query_id = ? AND doc_id = ?",
                ((risk, signals, run_id, q, d) for q, d, risk, signals in rows))
            conn.execute("INSERT OR REPLACE INTO risk_scored (run_id, scored_at, signal_set) VALUES (?, ?, ?)",
                         (run_id, now(), signal_set))
        self.write(write)

    def mark_risk_stale(self) -> None:
        """Every scored run needs scoring again: an input of every run's risk changed (risk's second model)."""
        self.write(lambda conn: conn.execute("UPDATE risk_scored SET signal_set = NULL"))

    def risk_scored_at(self, run_id: str) -> str | None:
        """When the run's risk was last written (None: never); a cheap key for caches of its candidates."""
        return self.scalar("SELECT scored_at FROM risk_scored WHERE run_id = ?", (self.rows_of(run_id),))
