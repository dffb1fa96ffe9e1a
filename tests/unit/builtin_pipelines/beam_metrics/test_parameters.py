"""beam_metrics's keys: validation messages and CamServer's expansion rules."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from builtin_pipelines.beam_metrics.parameters import expand, parse
from builtin_pipelines.beam_metrics.rotation import Rotation


def configure(parameters: dict[str, Any]) -> dict[str, Any]:
    """What the builtin's configure does, without importing the processing."""
    parse(parameters)
    expand(parameters)
    return parameters


def test_expansion_fills_in_camserver_defaults() -> None:
    """An empty config gets CamServer's processing defaults, nothing more."""
    assert configure({}) == {
        "image_background_enable": False,
        "image_background": None,
        "image_threshold": None,
        "image_region_of_interest": None,
        "image_good_region": None,
        "image_slices": None,
    }


def test_none_never_overwrites_a_default() -> None:
    """None at the top level and inside a section leaves the default in place."""
    parameters = configure(
        {
            "image_background_enable": None,
            "image_good_region": {"threshold": None, "gfscale": 3.0},
            "image_slices": {"number_of_slices": 5, "scale": None, "orientation": None},
        }
    )
    assert parameters["image_background_enable"] is False
    assert parameters["image_good_region"] == {"threshold": 0.3, "gfscale": 3.0}
    assert parameters["image_slices"] == {
        "number_of_slices": 5,
        "scale": 2,
        "orientation": "vertical",
    }


def test_empty_good_region_means_the_defaults() -> None:
    """``image_good_region: {}`` turns the good region on with threshold 0.3, gfscale 1.8."""
    parameters = configure({"image_good_region": {}, "image_slices": {}})
    assert parameters["image_good_region"] == {"threshold": 0.3, "gfscale": 1.8}
    assert parameters["image_slices"] == {
        "number_of_slices": 1,
        "scale": 2,
        "orientation": "vertical",
    }


def test_expansion_replaces_sections_instead_of_changing_them() -> None:
    """The caller's nested dicts are not modified by the expansion."""
    good_region = {"threshold": 0.5}
    parameters = configure({"image_good_region": good_region})
    assert good_region == {"threshold": 0.5}
    assert parameters["image_good_region"] == {"threshold": 0.5, "gfscale": 1.8}


def test_unknown_and_private_keys_pass_through_untouched() -> None:
    """Keys beam_metrics does not read, ``_``-prefixed ones included, are left as they are."""
    state = object()
    commented = {"image_threshold": "not validated: commented out"}
    parameters = configure({"camera_name": "cam", "_image_threshold": commented, "_s": state})
    assert parameters["camera_name"] == "cam"
    assert parameters["_image_threshold"] is commented
    assert parameters["_s"] is state


def test_rotation_is_normalised_as_camserver_does() -> None:
    """A number becomes {angle, order 1, mode "0.0"}; a zero angle disables the rotation."""
    assert configure({"rotation": 30})["rotation"] == {"angle": 30, "order": 1, "mode": "0.0"}
    assert configure({"rotation": {"angle": 90, "mode": "ortho"}})["rotation"] == {
        "angle": 90,
        "order": 1,
        "mode": "ortho",
    }
    assert configure({"rotation": 0})["rotation"] is None
    assert configure({"rotation": {"angle": 0, "mode": "ortho"}})["rotation"] is None


def test_rotation_modes_are_read_as_camserver_reads_them() -> None:
    """A numeric mode is a constant fill value; a scipy mode name is used as is."""
    assert parse({"rotation": 30}).rotation == Rotation(30.0, 1, "constant", 0.0)
    assert parse({"rotation": {"angle": 10, "mode": "7.5"}}).rotation == Rotation(
        10.0, 1, "constant", 7.5
    )
    assert parse({"rotation": {"angle": 10, "mode": 2, "order": 0}}).rotation == Rotation(
        10.0, 0, "constant", 2.0
    )
    assert parse({"rotation": {"angle": 10, "mode": "nearest"}}).rotation == Rotation(
        10.0, 1, "nearest", 0.0
    )
    rotation = parse({"rotation": {"angle": -90, "mode": "ortho"}}).rotation
    assert rotation is not None
    assert rotation.ortho
    assert rotation.quarter_turns == -1


def test_defaults_read_from_an_empty_dict() -> None:
    """Nothing configured means no pre-processing step at all."""
    settings = parse({})
    assert settings.background_mode is None
    assert settings.rotation is None
    assert settings.region_of_interest is None
    assert (settings.binning_x, settings.binning_y, settings.averaging) == (1, 1, 0)
    assert settings.threshold is settings.scale is settings.offset is None
    assert not settings.mirror_x
    assert not settings.mirror_y
    assert not settings.copy
    assert settings.notify_on_error is False


@pytest.mark.parametrize(
    ("enable", "mode"),
    [(False, None), (True, "subtract"), ("signed", "signed"), ("passive", "passive")],
)
def test_background_enable_values(enable: object, mode: str | None) -> None:
    """image_background_enable: false, true (clamped), "signed" or "passive"."""
    assert parse({"image_background_enable": enable}).background_mode == mode


@pytest.mark.parametrize(
    ("instance", "value", "expected"),
    [("cam_sp", None, True), ("cam_pipeline", None, False), ("cam_sp", False, False),
     ("cam", True, True)],
)  # fmt: skip
def test_notify_on_error_defaults_to_true_for_screen_panel_instances(
    instance: str, value: bool | None, expected: bool
) -> None:
    """notify_on_error is True by default only when the instance name ends in ``_sp``."""
    assert parse({"notify_on_error": value}, instance=instance).notify_on_error is expected


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "image_region_of_interest",
            [0, -5, 0, 10],
            "image_region_of_interest must be [offset_x, size_x, offset_y, size_y] with sizes"
            " > 0, got [0, -5, 0, 10]",
        ),
        ("image_region_of_interest", [0, 5, 0], "image_region_of_interest must be [offset_x"),
        ("image_region_of_interest", (0, 5.5, 0, 5), "image_region_of_interest must be [o"),
        ("image_background_enable", "yes", "image_background_enable must be true, false"),
        ("image_background", "../etc/passwd", "image_background: a background id is a file"),
        ("image_threshold", "5", "image_threshold must be a finite number, got '5'"),
        ("image_scale", float("nan"), "image_scale must be a finite number, got nan"),
        ("binning_x", 0, "binning_x must be an integer >= 1, got 0"),
        ("binning_y", 1.5, "binning_y must be an integer >= 1, got 1.5"),
        ("averaging", "3", "averaging must be an integer, got '3'"),
        ("image_averaging", True, "image_averaging must be an integer, got True"),
        ("mirror_x", "true", "mirror_x must be true or false, got 'true'"),
        ("notify_on_error", 1, "notify_on_error must be true or false, got 1"),
        ("rotation", "90", "rotation must be a number (degrees) or an object"),
        ("rotation", {"angle": "a"}, "rotation angle must be a finite number, got 'a'"),
        ("rotation", {"angle": 5, "order": 7}, "rotation order must be an integer from 0 to 5"),
        ("rotation", {"angle": 5, "mode": "bogus"}, 'rotation mode must be "ortho"'),
        ("rotation", {"angel": 5}, "rotation has an unknown key 'angel'"),
        ("image_good_region", 0.3, "image_good_region must be an object with keys threshold"),
        ("image_good_region", {"threshold": "a"}, "image_good_region threshold must be a num"),
        ("image_good_region", {"thresh": 0.3}, "image_good_region has an unknown key 'thresh'"),
        ("image_slices", {"number_of_slices": 2.0}, "image_slices number_of_slices must be"),
        ("image_slices", {"orientation": "diagonal"}, "image_slices orientation must be"),
        ("image_slices", {"scale": -1}, "image_slices scale must be a number > 0, got -1"),
        ("fw_threshold", "half", "fw_threshold must be a finite number, got 'half'"),
        ("include", "x_profile", "include must be a list of channel names, got 'x_profile'"),
        ("exclude", ["image", 3], "exclude must be a list of channel names"),
    ],
)
def test_bad_values_are_refused_with_a_message_quoting_them(
    key: str, value: object, message: str
) -> None:
    """parse raises ValueError naming the key and quoting the bad value."""
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse({key: value})


def test_a_refused_config_is_not_expanded() -> None:
    """configure validates before it expands: a refused candidate is left unchanged."""
    parameters = {"image_good_region": {}, "binning_x": -1}
    before = copy.deepcopy(parameters)
    with pytest.raises(ValueError, match="binning_x"):
        configure(parameters)
    assert parameters == before


def test_empty_region_of_interest_means_none() -> None:
    """CamServer treats an empty list as no region of interest."""
    assert parse({"image_region_of_interest": []}).region_of_interest is None
    assert parse({"image_region_of_interest": [1, 2, 3, 4]}).region_of_interest == (1, 2, 3, 4)


def test_empty_background_id_means_no_background() -> None:
    """CamServer treats an empty background name as none: nothing to load, nothing refused."""
    assert parse({"image_background": "", "image_background_enable": True}).background is None
