"""Key events from Review's candidate list write back only what they changed (pages/candidate_list.py)."""

from pages import candidate_list


def test_a_move_does_not_rewrite_the_note_being_typed():
    read = {"ns_query": "q1", "ns_cursor": "d1", "ns_note": ""}
    state = {**read, "ns_cursor": "d2", "ns_note": ""}  # a `j` key: the cursor moved, the note was left as read
    # the note box is not written: writing it would make the browser reset the box to "" while someone types
    assert candidate_list.changed(read, {}, state) == {"ns_cursor": "d2"}


def test_effects_still_unwritten_from_a_cut_off_callback_are_kept():
    read = {"ns_query": "q1", "ns_cursor": "d1", "ns_note": "typed"}
    unwritten = {"ns_cursor": "d3"}
    state = {**read, **unwritten}
    assert candidate_list.changed(read, unwritten, state) == {"ns_cursor": "d3"}
    state["ns_query"] = "q2"
    assert candidate_list.changed(read, unwritten, state) == {"ns_cursor": "d3", "ns_query": "q2"}
