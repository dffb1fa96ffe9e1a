"""JSON text from clients, parsed strictly: what Python's ``json`` lets through is refused here.

Request bodies and uploaded registry entries are JSON written by people and programs outside
the node. Python's parser accepts ``NaN`` and ``Infinity`` (not JSON), turns ``1e400`` into
infinity, and keeps lone surrogates (``"\\ud800"``) as strings that cannot be encoded as UTF-8
again: such a value, once stored, breaks every answer that contains it and the state file. One
parser refuses them all, quoting where in the document and why.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .nodeapi.errors import InvalidValueError, MalformedRequestError

__all__ = ["MAX_DEPTH", "check_value", "parse_json"]

MAX_DEPTH = 64
"""Deepest nesting of objects and arrays accepted."""


class _NonFinite:
    """Stands for NaN, Infinity or an overflowing number until the walk finds where it is."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def parse_json(data: bytes, what: str = "body", max_depth: int = MAX_DEPTH) -> Any:
    """The JSON document in ``data``, checked by ``check_value``.

    Args:
        data: The raw bytes; JSON is UTF-8 (RFC 8259), other encodings are refused.
        what: Names the document in messages ("body", a file name).
        max_depth: Deepest nesting accepted.

    Raises:
        MalformedRequestError: not UTF-8, not JSON, or nested too deep (its byte or path quoted).
        InvalidValueError: a NaN, an infinity or a lone surrogate (its path quoted).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequestError(
            f"{what}: not valid UTF-8 at byte {exc.start} ({exc.reason})"
        ) from None
    try:
        value = json.loads(text, parse_float=_parse_float, parse_constant=_NonFinite, strict=True)
    except json.JSONDecodeError as exc:
        raise MalformedRequestError(
            f"{what}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            f"(char {exc.pos})"
        ) from None
    except RecursionError:
        raise MalformedRequestError(f"{what}: JSON nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise MalformedRequestError(f"{what}: not accepted: {exc}") from None
    check_value(value, what, max_depth)
    return value


def _where(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _at(what: str, path: tuple[str | int, ...]) -> str:
    """``what: the.path`` (just ``what`` at the top of the document)."""
    return f"{what}: {_where(path)}" if path else what


def _show(text: str) -> str:
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_value(value: Any, what: str = "body", max_depth: int = MAX_DEPTH) -> None:
    """Refuse what a JSON document must not hold: non-finite numbers, lone surrogates (in
    keys or strings), nesting deeper than ``max_depth``. Iterative, so any depth is safe.

    Raises:
        MalformedRequestError: nested too deep.
        InvalidValueError: quoting the field path and the reason.
    """
    stack: list[tuple[Any, tuple[str | int, ...], int]] = [(value, (), 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if not _encodable(item):
                raise InvalidValueError(
                    f"{_at(what, path)}: the string {_show(item)} holds a lone surrogate, "
                    "which cannot be encoded as UTF-8"
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidValueError(
                    f"{_at(what, path)}: {item} is not a JSON number; use a finite number or null"
                )
        elif isinstance(item, _NonFinite):
            raise InvalidValueError(
                f"{_at(what, path)}: {item.text} is not a JSON number (NaN and infinities, "
                "or numbers too large for a double, are refused); use a finite number or null"
            )
        elif isinstance(item, (dict, list)):
            if depth >= max_depth:
                raise MalformedRequestError(
                    f"{what}: JSON nested deeper than {max_depth} levels at "
                    f"{_where(path) or 'the top'}"
                )
            if isinstance(item, dict):
                for key, child in item.items():
                    key_text = str(key)
                    if not _encodable(key_text):
                        raise InvalidValueError(
                            f"{_at(what, path)}: the key {_show(key_text)} holds a lone "
                            "surrogate, which cannot be encoded as UTF-8"
                        )
                    stack.append((child, (*path, key_text), depth + 1))
            else:
                stack.extend((child, (*path, i), depth + 1) for i, child in enumerate(item))
