"""What a value is, in the SwissFEL layout: its definition, its dataset, /general."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from builtin_pipelines.lib.h5writer.layout import (
    GENERAL_KEYS,
    Definition,
    definition_of,
    general_values,
    validate_channel_name,
)
from supervisor.contract.bsread import BSREAD_TYPES

NUMERIC = sorted(name for name in BSREAD_TYPES if name != "string")


@pytest.mark.parametrize("type_name", NUMERIC)
def test_every_bsread_scalar_type_is_a_scalar_of_its_dtype(type_name):
    """A numpy scalar of each bsread type is stored (N, 1) in that very dtype."""
    dtype = BSREAD_TYPES[type_name]
    definition, _ = definition_of(np.zeros(1, dtype)[0])
    assert definition == Definition("scalar", dtype, (1,))


@pytest.mark.parametrize("type_name", NUMERIC)
def test_every_bsread_array_type_keeps_its_dtype_and_numpy_shape(type_name):
    """Waveforms are 1-D arrays, images 2-D, both in their dtype and numpy order."""
    dtype = BSREAD_TYPES[type_name]
    assert definition_of(np.zeros(7, dtype))[0] == Definition("array", dtype, (7,))
    assert definition_of(np.zeros((3, 5), dtype))[0] == Definition("image", dtype, (3, 5))


def test_python_values_take_the_types_bsread_senders_declare():
    """bool, int and float from Python code become bool, int64 and float64 scalars."""
    assert definition_of(True)[0].dtype == np.dtype(bool)
    assert definition_of(3)[0].dtype == np.dtype("<i8")
    assert definition_of(0.5)[0].dtype == np.dtype("<f8")
    assert definition_of("é")[0] == Definition("string", None, ())
    assert definition_of([1.0, 2.0])[0] == Definition("array", np.dtype("<f8"), (2,))


def test_one_element_arrays_and_zero_d_arrays_are_scalars():
    """As bsread's receivers deliver a [1]-shaped channel: one scalar per row."""
    assert definition_of(np.array([7], np.int32))[0] == Definition("scalar", np.dtype("<i4"), (1,))
    assert definition_of(np.array(7.0))[0] == Definition("scalar", np.dtype("<f8"), (1,))


def test_missing_values_are_none_and_empty_arrays():
    """None and an empty array (what bsread decodes an empty frame to) are missing."""
    assert definition_of(None) is None
    assert definition_of(np.zeros(0, np.uint16)) is None
    assert definition_of(np.zeros((0, 4), np.uint16)) is None


def test_big_endian_values_are_stored_little_endian():
    """A big-endian channel and a little-endian one of the same type share a definition."""
    big = np.arange(6, dtype=">u2").reshape(2, 3)
    definition, value = definition_of(big)
    assert definition == Definition("image", np.dtype("<u2"), (2, 3))
    np.testing.assert_array_equal(value, big)


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        (np.zeros(3, np.complex64), "complex64"),
        (b"raw", "bytes"),
        (np.array(["a"], dtype=object), "object"),
        (2**64, "int64"),
        ({"a": 1}, "object"),
    ],
)
def test_values_bsread_cannot_carry_are_refused(value, quoted):
    """complex, bytes, objects and oversized ints raise TypeError naming what is wrong."""
    with pytest.raises(TypeError, match=quoted):
        definition_of(value)


@pytest.mark.parametrize("name", ["", "a/b", ".", "..", 3])
def test_channel_names_that_are_not_group_names_are_refused(name):
    """A channel becomes /data/<name>: names HDF5 would read as a path are refused."""
    with pytest.raises(ValueError, match="channel name"):
        validate_channel_name(name)


def test_real_bsread_channel_names_are_accepted():
    """PSI's channel names carry ':', '-' and '.'."""
    assert validate_channel_name("SARFE10-PSSS059:SPECTRUM_Y.X") == "SARFE10-PSSS059:SPECTRUM_Y.X"


def test_general_has_the_four_entries_with_defaults_and_keeps_others():
    """created defaults to now, the others to 'not given'; extra entries follow them."""
    now = datetime(2024, 5, 6, 7, 8, 9).astimezone()
    values = general_values({"user": "p12345", "sample": "LaB6"}, now=now)
    assert list(values) == [*GENERAL_KEYS, "sample"]
    assert values["created"] == now.isoformat(timespec="seconds")
    assert values["user"] == "p12345"
    assert values["instrument"] == values["process"] == "not given"


@pytest.mark.parametrize("general", [{"a/b": "x"}, {"user": 3}, {"": "x"}])
def test_general_entries_must_be_named_strings(general):
    """A key that is not a plain name, or a value not a string, is refused quoting it."""
    with pytest.raises(ValueError, match="general"):
        general_values(general)
