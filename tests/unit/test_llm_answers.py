"""Reading an LLM judge's reply (core.llm_judge.parse_answer): the JSON the prompt asks for wherever it sits in the
reply, or a reply that starts with the verdict word; anything else is malformed (None), never a guess."""

from __future__ import annotations

import pytest

from core.llm_judge import Answer, parse_answer

FN, TN = "false_negative", "true_negative"


@pytest.mark.parametrize("reply, expected", [
    ('{"verdict": "relevant", "reason": "Same answer."}', Answer(FN, "Same answer.")),
    ('{"verdict": "not_relevant", "reason": "Only the topic\nmatches."}', Answer(TN, "Only the topic matches.")),
    ('<think>is {it}?</think>```json\n{"verdict": "Not Relevant", "reason": "off topic"}\n``` see {note}',
     Answer(TN, "off topic")),
    ('Sure! {"a": 1} and then {"verdict": "relevant"}', Answer(FN, "")),
    ("not relevant: it is about sprints", Answer(TN, "it is about sprints")),
    ("Relevant.", Answer(FN, "")),
    ("irrelevant", Answer(TN, "")),
    ('{"verdict": "yes", "reason": "x"}', None),
    ('{"verdict": 1}', None),
    ("The passage is relevant", None),
    ("relevantly so", None),
    ("", None),
])
def test_parse_answer(reply, expected):
    assert parse_answer(reply) == expected


def test_a_long_reason_is_one_short_line():
    answer = parse_answer('{"verdict": "relevant", "reason": "' + "word\\n " * 200 + '"}')
    assert answer is not None and "\n" not in answer.reason and len(answer.reason) <= 300
