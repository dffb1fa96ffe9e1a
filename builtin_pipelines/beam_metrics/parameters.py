"""The keys beam_metrics reads: validation, and CamServer's expansion rules (§7.1).

:func:`parse` reads a parameters dict into :class:`Settings`, raising ValueError with a message
that quotes the bad key and value. :func:`expand` fills in CamServer's defaults in place, as
CamServer's ``PipelineConfig.expand_config`` does, so ``processing_parameters`` shows the same
keys. A ``None`` never overwrites a default. Keys not read here, ``_``-prefixed ones included,
are the user's: they pass through untouched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from numbers import Integral, Real
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from .backgrounds import check_id
from .rotation import Rotation, normalise, parse_rotation

__all__ = ["DEFAULTS", "GOOD_REGION_DEFAULTS", "SLICES_DEFAULTS", "Settings", "expand", "parse"]

# CamServer's PipelineConfig.DEFAULT_CONFIGURATION, its processing part.
DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "image_background_enable": False,
        "image_background": None,
        "image_threshold": None,
        "image_region_of_interest": None,
        "image_good_region": None,
        "image_slices": None,
    }
)
GOOD_REGION_DEFAULTS: Mapping[str, Any] = MappingProxyType({"threshold": 0.3, "gfscale": 1.8})
SLICES_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {"number_of_slices": 1, "scale": 2, "orientation": "vertical"}
)
_ORIENTATIONS = ("vertical", "horizontal")

BackgroundMode = Literal["subtract", "signed", "passive"]


@dataclass(frozen=True, slots=True)
class Settings:
    """What pre-processing and the pipeline entry need, read from one parameters dict."""

    background: str | None = None
    background_mode: BackgroundMode | None = None  # None: no background at all
    threshold: float | None = None
    region_of_interest: tuple[int, int, int, int] | None = None
    image_averaging: int = 0
    scale: float | None = None
    offset: float | None = None
    mirror_x: bool = False
    mirror_y: bool = False
    rotation: Rotation | None = None
    averaging: int = 0
    binning_x: int = 1
    binning_y: int = 1
    binning_mean: bool = False
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None
    notify_on_error: bool = False
    copy: bool = False


# These run for every key at every frame: the exact-type test spares the slow ABC check for
# the int, float and bool that JSON gives.
def _is_bool(value: object) -> bool:
    return type(value) is bool or isinstance(value, np.bool_)


def _is_int(value: object) -> bool:
    kind = type(value)
    return kind is int or (kind is not bool and isinstance(value, Integral))


def _is_number(value: object) -> bool:
    if type(value) is float or type(value) is int:  # the usual case, without the ABC's check
        return math.isfinite(value)
    return type(value) is not bool and isinstance(value, Real) and math.isfinite(value)


def _bool(parameters: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = parameters.get(key)
    if value is None:
        return default
    if not _is_bool(value):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return bool(value)


def _number(parameters: Mapping[str, Any], key: str) -> float | None:
    value = parameters.get(key)
    if value is not None and not _is_number(value):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    return value


def _int(parameters: Mapping[str, Any], key: str, default: int, minimum: int | None = None) -> int:
    value = parameters.get(key)
    if value is None:
        return default
    if not _is_int(value) or (minimum is not None and value < minimum):
        wanted = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise ValueError(f"{key} must be {wanted}, got {value!r}")
    return int(value)


def _names(parameters: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = parameters.get(key)
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f"{key} must be a list of channel names, got {value!r}")
    for name in value:
        if not isinstance(name, str):
            raise ValueError(f"{key} must be a list of channel names, got {value!r}")
    return tuple(value)


def _section(
    parameters: Mapping[str, Any], key: str, defaults: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The sub-dict ``key`` with its defaults filled in (None values do not count), or None."""
    value = parameters.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} must be an object with keys {', '.join(defaults)}, got {value!r}")
    section = dict(defaults)
    for name, item in value.items():
        if name not in defaults:
            raise ValueError(
                f"{key} has an unknown key {name!r} (allowed: {', '.join(defaults)}), got {value!r}"
            )
        if item is not None:
            section[name] = item
    return section


def _background_mode(parameters: Mapping[str, Any]) -> BackgroundMode | None:
    value = parameters.get("image_background_enable")
    if value is None or (_is_bool(value) and not value):
        return None
    if _is_bool(value):
        return "subtract"
    if value == "signed":
        return "signed"
    if value == "passive":
        return "passive"
    raise ValueError(
        f'image_background_enable must be true, false, "signed" or "passive", got {value!r}'
    )


def _region_of_interest(parameters: Mapping[str, Any]) -> tuple[int, int, int, int] | None:
    value = parameters.get("image_region_of_interest")
    if value is None or (isinstance(value, list | tuple) and not value):
        return None  # CamServer: an empty list is no region of interest
    if (
        not isinstance(value, list | tuple)
        or len(value) != 4
        or not all(_is_int(v) for v in value)
        or value[1] <= 0
        or value[3] <= 0
    ):
        raise ValueError(
            "image_region_of_interest must be [offset_x, size_x, offset_y, size_y] "
            f"with sizes > 0, got {value!r}"
        )
    offset_x, size_x, offset_y, size_y = (int(v) for v in value)
    return offset_x, size_x, offset_y, size_y


def _check_good_region(parameters: Mapping[str, Any]) -> None:
    section = _section(parameters, "image_good_region", GOOD_REGION_DEFAULTS)
    if section is None:
        return
    for key in GOOD_REGION_DEFAULTS:
        if not _is_number(section[key]):
            raise ValueError(f"image_good_region {key} must be a number, got {section[key]!r}")


def _check_slices(parameters: Mapping[str, Any]) -> None:
    section = _section(parameters, "image_slices", SLICES_DEFAULTS)
    if section is None:
        return
    count, scale, orientation = (section[key] for key in SLICES_DEFAULTS)
    if not _is_int(count) or count < 1:
        raise ValueError(f"image_slices number_of_slices must be an integer >= 1, got {count!r}")
    if not _is_number(scale) or scale <= 0:
        raise ValueError(f"image_slices scale must be a number > 0, got {scale!r}")
    if orientation not in _ORIENTATIONS:
        raise ValueError(
            f'image_slices orientation must be "vertical" or "horizontal", got {orientation!r}'
        )


def parse(parameters: Mapping[str, Any], *, instance: str = "") -> Settings:
    """Validate the keys beam_metrics reads and return them as :class:`Settings`.

    Args:
        parameters: the pipeline's parameters; missing keys and ``None`` take the defaults.
        instance: the instance name: ``notify_on_error`` defaults to True when it ends in
            ``_sp`` (CamServer's screen-panel pipelines).

    Raises:
        ValueError: a key has a bad value; the message quotes the key and the value.
    """
    background = parameters.get("image_background") or None  # CamServer: "" is no background
    if background is not None:
        try:
            check_id(background)
        except ValueError as exc:
            raise ValueError(f"image_background: {exc}") from None
    _check_good_region(parameters)
    _check_slices(parameters)
    _number(parameters, "fw_threshold")
    threshold = _number(parameters, "image_threshold")
    return Settings(
        background=background,
        background_mode=_background_mode(parameters),
        threshold=threshold,
        region_of_interest=_region_of_interest(parameters),
        image_averaging=_int(parameters, "image_averaging", 0),
        scale=_number(parameters, "image_scale"),
        offset=_number(parameters, "image_offset"),
        mirror_x=_bool(parameters, "mirror_x"),
        mirror_y=_bool(parameters, "mirror_y"),
        rotation=parse_rotation(parameters.get("rotation")),
        averaging=_int(parameters, "averaging", 0),
        binning_x=_int(parameters, "binning_x", 1, minimum=1),
        binning_y=_int(parameters, "binning_y", 1, minimum=1),
        binning_mean=_bool(parameters, "binning_mean"),
        include=_names(parameters, "include"),
        exclude=_names(parameters, "exclude"),
        notify_on_error=_bool(parameters, "notify_on_error", instance.endswith("_sp")),
        copy=_bool(parameters, "copy"),
    )


def expand(parameters: MutableMapping[str, Any]) -> None:
    """Fill in CamServer's defaults in place; call it on parameters :func:`parse` accepted.

    The top-level processing defaults, the defaults inside ``image_good_region`` and
    ``image_slices`` (so ``{}`` means ``{threshold: 0.3, gfscale: 1.8}``), and CamServer's
    normalised ``rotation``: a number becomes ``{angle, order: 1, mode: "0.0"}``, a zero or
    missing angle becomes None. Sub-dicts are replaced, never changed, since the caller's
    config may share them.
    """
    for key, default in DEFAULTS.items():
        if parameters.get(key) is None:
            parameters[key] = default
    for key, defaults in (
        ("image_good_region", GOOD_REGION_DEFAULTS),
        ("image_slices", SLICES_DEFAULTS),
    ):
        section = _section(parameters, key, defaults)
        if section is not None:
            parameters[key] = section
    if parameters.get("rotation") is not None:
        parameters["rotation"] = normalise(parameters["rotation"])
