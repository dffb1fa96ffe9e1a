"""JSON merge patch, the semantics of PATCH .../config."""

from __future__ import annotations

from supervisor.mergepatch import merge_patch


def test_nested_objects_merge_key_by_key():
    """A patch of one ROI key keeps the other ROI keys."""
    assert merge_patch({"roi": {"x": 1, "y": 2}, "t": 5}, {"roi": {"x": 10}}) == {
        "roi": {"x": 10, "y": 2},
        "t": 5,
    }


def test_null_deletes_a_key_and_lists_replace():
    """None removes; a list replaces the old value whole."""
    assert merge_patch({"a": 1, "b": [1, 2]}, {"a": None, "b": [3]}) == {"b": [3]}


def test_inputs_are_not_modified():
    """The current config is never changed in place."""
    current = {"roi": {"x": 1}}
    merge_patch(current, {"roi": {"x": 2}})
    assert current == {"roi": {"x": 1}}
