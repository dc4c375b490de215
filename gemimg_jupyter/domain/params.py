"""The generation parameters, one row each: the single table every layer reads.

:data:`PARAM_SPECS` says, per parameter, its name, type, default, bounds and
help, whether and as what it sweeps, its ``%%gemimg`` option and where it goes
in the request body. :class:`~.models.GenerationParams` takes its defaults and
bounds from here, the sweep axes their names and bounds, the magic its traits
and options, the panel its controls, the docs their text and the simulator its
checks. Adding a parameter means adding a row here (and its field on
``GenerationParams`` and its place in the request body).

The table is in the order sweep axes are listed (numbers first).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from gemimg_jupyter.domain.errors import ValidationError

__all__ = [
    "DEFAULT_MODEL",
    "PARAMS",
    "PARAM_SPECS",
    "SAMPLING_PARAMS",
    "VALUE_PARAMS",
    "ParamKwargs",
    "ParamSpec",
    "ParamValues",
    "check_keywords",
]

DEFAULT_MODEL = "gemini-2.5-flash-image-official"


@dataclass(frozen=True)
class ParamSpec:
    """One generation parameter.

    Attributes
    ----------
    name : str
        The field of :class:`~.models.GenerationParams` (and its key in ``as_dict()``).
    type : type
        What a checked value is: ``str``, ``float`` or ``tuple`` (reference images).
    help : str
        What the value is, one phrase (the magic's option help, the docs).
    default : object
        The value when nothing is given (``None`` for the prompt, which is required).
    bounds : (float, float) or None
        For numbers, the closed range allowed.
    short, metavar : str or None
        The ``%%gemimg`` short flag and value name.
    wire : str or None
        The key in the request's ``metadata``; a parameter with one is a sampling
        control, sent only to models that take them (the others get ``None``).
    step : float
        The panel slider's step (numbers).
    label : str
        The panel control's label (default: ``name``).
    keyword : str or None
        The Python keyword of ``Session.params``/``generate``/``sweep`` (default: ``name``; ``None``: positional).
    axis : str or None
        The sweep axis name (default: ``name``; ``None``: it cannot be swept).
    option : str or None
        The ``%%gemimg`` long option (default: ``--`` and the label; ``None``: none, the prompt is the cell body).
    """

    name: str
    type: type
    help: str
    default: Any = None
    bounds: tuple[float, float] | None = None
    short: str | None = None
    metavar: str | None = None
    wire: str | None = None
    step: float = 0.0
    label: str = ""
    keyword: str | None = ""
    axis: str | None = ""
    option: str | None = ""

    def __post_init__(self) -> None:
        label = self.label or self.name
        derived = {"label": label, "keyword": self.name, "axis": self.name, "option": f"--{label}"}
        for attr, value in derived.items():
            if getattr(self, attr) == "":
                object.__setattr__(self, attr, value)

    @property
    def sampling(self) -> bool:
        """True for a sampling control (temperature, top-p): only models with sampling controls take it."""
        return self.wire is not None

    @property
    def range_text(self) -> str:
        """``0–2`` for a number, empty otherwise."""
        return "" if self.bounds is None else f"{self.bounds[0]:g}–{self.bounds[1]:g}"

    @property
    def described(self) -> str:
        """The help with the range: ``Sampling temperature, 0–2``."""
        return f"{self.help}, {self.range_text}" if self.bounds else self.help

    @property
    def allowed(self) -> str:
        """What to write instead of a bad number: ``use a number from 0 to 2``."""
        assert self.bounds is not None, f"{self.name} is not a number"
        return f"use a number from {self.bounds[0]:g} to {self.bounds[1]:g}"

    def check_number(self, value: object, *, show_number: bool = False) -> float:
        """``value`` as a float within the bounds (rounded to 6 decimals), or a one-line :class:`ValidationError`.

        The message shows ``value`` as given; with ``show_number``, as the
        number it was read as, once it could be read (``3`` shows as ``3.0``).
        """
        if isinstance(value, bool):
            raise ValidationError.not_allowed(self.name, value, self.allowed)
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValidationError.not_allowed(self.name, value, self.allowed) from None
        lo, hi = self.bounds or (-math.inf, math.inf)
        if not math.isfinite(number) or not lo <= number <= hi:
            raise ValidationError.not_allowed(self.name, number if show_number else value, self.allowed)
        return round(number, 6)


_SIZE_HELP = "Aspect ratio, e.g. 1:1, 3:2, 16:9, 9:16, 21:9 (16x9 works too)"

#: Every generation parameter, in the order sweep axes are listed.
#: Columns: name, type, help, default, bounds, short flag, metavar, metadata key, slider step.
PARAM_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("temperature", float, "Sampling temperature", 0.8, (0.0, 2.0), "-t", "T", "temperature", 0.05),
    ParamSpec("top_p", float, "Nucleus sampling top-p", 0.95, (0.0, 1.0), "-p", "P", "topP", 0.01, label="top-p"),
    ParamSpec("size", str, _SIZE_HELP, "1:1", short="-s"),
    ParamSpec("resolution", str, "1K, or 2K/4K on models that have them", "1K", short="-r"),
    ParamSpec("model", str, "Model id or alias", DEFAULT_MODEL, short="-m"),
    ParamSpec("prompt", str, "What the image should show", keyword=None, option=None),
    ParamSpec("references", tuple, "Reference images", (), keyword="reference_images", axis="ref", option="--ref"),
)

#: The table by parameter name.
PARAMS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAM_SPECS}
#: The parameters given as plain values under their own name (model, size, resolution, temperature, top-p):
#: the keys of :class:`ParamValues`, of a ``defaults=`` mapping and of the magic's ``%config`` defaults.
VALUE_PARAMS: tuple[ParamSpec, ...] = tuple(spec for spec in PARAM_SPECS if spec.keyword == spec.name)
#: The parameters only models with sampling controls take (temperature, top-p), in table order.
SAMPLING_PARAMS: tuple[ParamSpec, ...] = tuple(spec for spec in PARAM_SPECS if spec.sampling)


class ParamValues(TypedDict, total=False):
    """The optional parameters of :meth:`~.models.GenerationParams.create` (``None``: not given)."""

    model: str | None
    size: str | None
    resolution: str | None
    temperature: float | str | None
    top_p: float | str | None


class ParamKwargs(ParamValues, total=False):
    """The parameter keywords of ``Session.params``/``generate`` (every row of the table with a keyword)."""

    reference_images: object


def check_keywords(where: str, kwargs: Mapping[str, Any], known: type = ParamKwargs) -> None:
    """Refuse a keyword the ``known`` ``TypedDict`` does not declare, as Python would for a misspelt argument."""
    keys = getattr(known, "__optional_keys__", frozenset()) | getattr(known, "__required_keys__", frozenset())
    for name in kwargs:
        if name not in keys:
            raise TypeError(f"{where}() got an unexpected keyword argument {name!r}")
