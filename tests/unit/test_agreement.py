"""κ and α match scikit-learn and the krippendorff package on verdicts stored in a real workspace, edge cases are
undefined with a reason, and the disagreement queue empties through adjudication."""

from __future__ import annotations

import math

import krippendorff
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from core import agreement, labels
from core.datasets import ingest
from tests.fixtures import DOCS

FN, TN, U = "false_negative", "true_negative", "unsure"
ITEMS = [("q1", d) for d in list(DOCS)[:8]] + [("q2", d) for d in list(DOCS)[8:12]]
# None = not judged by that annotator.
ANA = [FN, FN, TN, TN, U, FN, TN, TN, FN, U, TN, FN]
BOB = [FN, TN, TN, TN, U, FN, FN, TN, FN, TN, TN, None]
CY = [None, FN, TN, U, U, FN, TN, None, FN, U, FN, FN]


@pytest.fixture
def store(workspace, beir_dir):
    s = workspace.store()
    ingest(s, beir_dir, "tiny")
    return s


def judge(store, who: str, verdicts: list[str | None], items: list[tuple[str, str]] = ITEMS) -> None:
    for (query_id, doc_id), label in zip(items, verdicts):
        if label is not None:
            labels.record(store, "tiny", query_id, doc_id, who, label)


def reference_kappa(x: list[str | None], y: list[str | None]) -> tuple[float, int]:
    both = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
    return cohen_kappa_score([a for a, _ in both], [b for _, b in both]), len(both)


def reference_alpha(*coders: list[str | None]) -> float:
    code = {label: i for i, label in enumerate(labels.LABELS)}
    data = np.array([[np.nan if v is None else code[v] for v in row] for row in coders], dtype=float)
    return krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")


def pair_row(result: agreement.Agreement, a: str, b: str) -> pd.Series:
    return result.pairs.set_index(["a", "b"]).loc[(a, b)]


def test_kappa_and_alpha_match_reference_implementations(store):
    coders = {"ana": ANA, "bob": BOB, "cy": CY}
    for who, verdicts in coders.items():
        judge(store, who, verdicts)
    result = agreement.dataset_agreement(store, "tiny")
    assert result.annotators == ["ana", "bob", "cy"]
    assert (result.items, result.shared_items) == (12, 12)
    assert result.own_items == {"ana": 12, "bob": 11, "cy": 10}
    for a, b in (("ana", "bob"), ("ana", "cy"), ("bob", "cy")):
        expected, overlap = reference_kappa(coders[a], coders[b])
        row = pair_row(result, a, b)
        assert row["kappa"] == pytest.approx(expected) and row["items"] == overlap and row["reason"] is None
        matrix = result.matrix()
        assert matrix.loc[a, b] == matrix.loc[b, a] == pytest.approx(expected)
    assert result.alpha == pytest.approx(reference_alpha(ANA, BOB, CY)) and result.alpha_reason is None
    assert result.matrix("items").loc["bob", "bob"] == 11 and math.isnan(result.matrix().loc["ana", "ana"])


def test_known_values_by_hand(store):
    """Independent of both libraries: p_o = 3/4, p_e = 1/2, so κ = 0.5; α for the same data is 8/15."""
    judge(store, "ana", [FN, FN, TN, TN])
    judge(store, "bob", [FN, TN, TN, TN])
    result = agreement.dataset_agreement(store, "tiny")
    row = pair_row(result, "ana", "bob")
    assert row["kappa"] == pytest.approx(0.5) and row["observed"] == pytest.approx(0.75)
    # α = 1 − D_o/D_e with n = 8 pairable values (3 FN, 5 TN): D_o = 2/8, D_e = 2·3·5/(8·7) → α = 1 − 7/15.
    assert result.alpha == pytest.approx(1 - (2 / 8) / (30 / 56))


def test_per_query_agreement_matches_reference_on_each_query(store):
    judge(store, "ana", ANA)
    judge(store, "bob", BOB)
    by_query = agreement.agreement_by_query(store, "tiny").set_index("query_id")
    assert set(by_query.index) == {"q1", "q2"}
    for query_id, rows in (("q1", slice(0, 8)), ("q2", slice(8, 12))):
        one = agreement.dataset_agreement(store, "tiny", query_id=query_id)
        expected, overlap = reference_kappa(ANA[rows], BOB[rows])
        assert pair_row(one, "ana", "bob")["kappa"] == pytest.approx(expected)
        assert one.alpha == pytest.approx(reference_alpha(ANA[rows], BOB[rows]))
        assert by_query.loc[query_id, "alpha"] == pytest.approx(one.alpha)
        assert by_query.loc[query_id, "shared_items"] == overlap


def test_no_verdicts_and_one_annotator_are_undefined(store):
    empty = agreement.dataset_agreement(store, "tiny")
    assert empty.annotators == [] and empty.pairs.empty and empty.alpha is None
    assert empty.alpha_reason == agreement.ONE_ANNOTATOR and empty.items == 0
    assert agreement.agreement_by_query(store, "tiny").empty
    judge(store, "ana", ANA)
    one = agreement.dataset_agreement(store, "tiny")
    assert one.annotators == ["ana"] and one.pairs.empty and one.matrix().shape == (1, 1)
    assert one.alpha is None and one.alpha_reason == agreement.ONE_ANNOTATOR
    with pytest.raises(ValueError):  # the reference agrees that one coder has no pairable unit
        reference_alpha(ANA)


def test_no_overlap_is_undefined(store):
    judge(store, "ana", ANA[:6] + [None] * 6)
    judge(store, "bob", [None] * 6 + BOB[6:])
    result = agreement.dataset_agreement(store, "tiny")
    row = pair_row(result, "ana", "bob")
    assert row["items"] == 0 and math.isnan(row["kappa"]) and row["reason"] == agreement.NO_OVERLAP
    assert math.isnan(row["observed"])
    assert result.alpha is None and result.alpha_reason == agreement.NO_SHARED and result.shared_items == 0


def test_full_agreement(store):
    judge(store, "ana", ANA)
    judge(store, "bob", ANA)
    result = agreement.dataset_agreement(store, "tiny")
    assert pair_row(result, "ana", "bob")["kappa"] == pytest.approx(1.0) == reference_kappa(ANA, ANA)[0]
    assert result.alpha == pytest.approx(1.0) == pytest.approx(reference_alpha(ANA, ANA))


def test_full_agreement_on_a_single_label_is_undefined(store):
    """Both say FN on everything: chance agreement is 1, the reference gives NaN / refuses, we give a reason."""
    judge(store, "ana", [FN] * 4)
    judge(store, "bob", [FN] * 4)
    result = agreement.dataset_agreement(store, "tiny")
    row = pair_row(result, "ana", "bob")
    assert math.isnan(row["kappa"]) and row["reason"] == agreement.ONE_LABEL and row["observed"] == 1.0
    with pytest.warns(Warning):
        assert math.isnan(cohen_kappa_score([FN] * 4, [FN] * 4))
    assert result.alpha is None and result.alpha_reason == agreement.ONE_LABEL
    with pytest.raises(ValueError):
        reference_alpha([FN] * 4, [FN] * 4)


def test_agreement_uses_current_independent_verdicts(store):
    """Undone verdicts and adjudications do not count; a changed mind counts once, as its latest label."""
    judge(store, "ana", ANA)
    judge(store, "bob", BOB)
    labels.record(store, "tiny", *ITEMS[0], "bob", TN)  # change of mind, then undo it: back to FN
    labels.undo(store, "tiny", "bob")
    labels.record(store, "tiny", *ITEMS[1], "ana", U, adjudication=True)  # ana adjudicates her own pair
    result = agreement.dataset_agreement(store, "tiny")
    assert pair_row(result, "ana", "bob")["kappa"] == pytest.approx(reference_kappa(ANA, BOB)[0])
    assert result.alpha == pytest.approx(reference_alpha(ANA, BOB))


def test_disagreement_queue_and_adjudication(store):
    judge(store, "ana", ANA)
    judge(store, "bob", BOB)
    queue = agreement.disagreements(store, "tiny")
    expected = {item for item, a, b in zip(ITEMS, ANA, BOB) if a and b and a != b}
    assert set(zip(queue["query_id"], queue["doc_id"])) == expected
    first = queue.iloc[0]
    assert first["verdicts"] == {"ana": ANA[ITEMS.index((first.query_id, first.doc_id))],
                                 "bob": BOB[ITEMS.index((first.query_id, first.doc_id))]}
    assert first["annotators"] == 2 and len(first["labels"]) == 2

    event_id = labels.record(store, "tiny", first.query_id, first.doc_id, "lead", TN, note="checked",
                             adjudication=True)
    event = store.events("tiny").set_index("id").loc[event_id]
    assert (event["kind"], event["annotator"], event["label"]) == ("adjudication", "lead", TN)
    after = agreement.disagreements(store, "tiny")
    assert len(after) == len(queue) - 1 and (first.query_id, first.doc_id) not in set(
        zip(after["query_id"], after["doc_id"]))
    final = labels.resolved(store, "tiny").set_index(["query_id", "doc_id"]).loc[(first.query_id, first.doc_id)]
    assert (final["label"], final["source"]) == (TN, "adjudicated")
    # the adjudicator is not a third opinion in the agreement statistics
    assert agreement.dataset_agreement(store, "tiny").annotators == ["ana", "bob"]
    # undoing the adjudication (an event, not a delete) puts the pair back in the queue
    labels.undo(store, "tiny", "lead")
    assert len(agreement.disagreements(store, "tiny")) == len(queue)
    assert len(store.events("tiny", "lead")) == 2


def test_no_disagreements_without_conflict(store):
    assert agreement.disagreements(store, "tiny").empty
    judge(store, "ana", ANA)
    judge(store, "bob", ANA)
    assert agreement.disagreements(store, "tiny").empty


def test_progress_counts_and_share_of_targets(store):
    judge(store, "ana", ANA)
    judge(store, "bob", BOB)
    labels.record(store, "tiny", *ITEMS[0], "bob", TN)
    labels.undo(store, "tiny", "bob")
    labels.record(store, "tiny", *ITEMS[1], "lead", FN, adjudication=True)
    targets = pd.DataFrame(ITEMS[:4] + [("q3", "heat-3")], columns=["query_id", "doc_id"])
    table = agreement.annotator_progress(store, "tiny", targets).set_index("annotator")
    assert list(table.index) == ["ana", "bob", "lead"]
    assert table.loc["ana", [FN, TN, U]].tolist() == [ANA.count(FN), ANA.count(TN), ANA.count(U)]
    assert table.loc["ana", "judged"] == 12 and table.loc["bob", "judged"] == 11
    assert (table.loc["bob", "events"], table.loc["bob", "undos"]) == (13, 1)
    assert (table.loc["lead", "judged"], table.loc["lead", "adjudications"]) == (0, 1)
    assert table.loc["ana", "done"] == 4 and table.loc["ana", "share"] == pytest.approx(4 / 5)
    assert agreement.annotator_progress(store, "tiny").columns[-1] == "last_at"


@pytest.mark.parametrize("value, words", [(-0.01, "poor agreement"), (0.0, "slight agreement"),
                                          (0.2, "slight agreement"), (0.21, "fair agreement"),
                                          (0.4, "fair agreement"), (0.41, "moderate agreement"),
                                          (0.6, "moderate agreement"), (0.61, "substantial agreement"),
                                          (0.8, "substantial agreement"), (0.81, "almost perfect agreement"),
                                          (1.0, "almost perfect agreement")])
def test_kappa_reads_in_landis_and_koch_bands(value, words):
    assert agreement.reading("kappa", value) == words


@pytest.mark.parametrize("value, words", [(-0.3, "too low to rely on"), (0.666, "too low to rely on"),
                                          (0.667, "tentative"), (0.799, "tentative"), (0.8, "reliable"),
                                          (1.0, "reliable")])
def test_alpha_reads_in_krippendorffs_thresholds(value, words):
    assert agreement.reading("alpha", value) == words


def test_undefined_values_have_no_reading():
    assert agreement.reading("kappa", None) is None and agreement.reading("alpha", math.nan) is None
    with pytest.raises(ValueError):
        agreement.reading("pi", 0.5)
