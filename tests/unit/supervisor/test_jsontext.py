"""Strict JSON: what Python's json lets through and no stored document may hold."""

from __future__ import annotations

import pytest

from supervisor.jsontext import check_value, parse_json
from supervisor.nodeapi.errors import InvalidValueError, MalformedRequestError


def test_plain_json_is_parsed() -> None:
    """Ordinary JSON, unicode included, comes back as Python values."""
    assert parse_json('{"a": [1, 2.5, "é", null, true]}'.encode()) == {
        "a": [1, 2.5, "é", None, True]
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[1, NaN]", "body: [1]: NaN is not a JSON number"),
        (b'{"a": {"b": -Infinity}}', "body: a.b: -Infinity is not a JSON number"),
        (b'{"a": 1e999}', "body: a: 1e999 is not a JSON number"),
        (b'{"a": "\\udc80"}', "body: a: the string '\\udc80' holds a lone surrogate"),
        (b'{"\\ud800": 1}', "body: the key '\\ud800' holds a lone surrogate"),
    ],
)
def test_values_no_document_may_hold_are_refused_with_their_path(data: bytes, message: str) -> None:
    """NaN, infinities, overflowing numbers and lone surrogates: InvalidValueError."""
    with pytest.raises(InvalidValueError) as info:
        parse_json(data)
    assert info.value.message.startswith(message)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xef\xbb\xbf{}", "body: not valid JSON: Unexpected UTF-8 BOM"),
        (b'"\xc3"', "body: not valid UTF-8 at byte 1"),
        (b"[" * 100_000 + b"]" * 100_000, "body: JSON nested deeper than 64 levels"),
        (b"[" * 65 + b"]" * 65, "body: JSON nested deeper than 64 levels at [0]"),
        (b"1" * 5000, "body: not accepted: Exceeds the limit"),
    ],
)
def test_unreadable_documents_are_malformed_saying_why(data: bytes, message: str) -> None:
    """Not UTF-8, too deep, numbers Python will not convert: MalformedRequestError."""
    with pytest.raises(MalformedRequestError) as info:
        parse_json(data)
    assert info.value.message.startswith(message)


def test_sixty_four_levels_are_accepted() -> None:
    """The limit is inclusive: 64 nested arrays parse."""
    assert parse_json(b"[" * 64 + b"]" * 64) is not None


def test_check_value_judges_python_values() -> None:
    """A float NaN already parsed (e.g. from a state file) is found by its path."""
    with pytest.raises(InvalidValueError, match=r"^record: x\[0\]: nan"):
        check_value({"x": [float("nan")]}, "record")
