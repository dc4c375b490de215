"""The generation parameters, one row each: the single table every layer reads.

:data:`PARAM_SPECS` says, per parameter, its name, type, default, bounds and
help, whether and as what it sweeps, its ``%%gemimg`` option and where it goes
in the request body. :class:`~.models.GenerationParams` takes its defaults and
bounds from here, the sweep axes their names and bounds, the magic its traits
and options, the panel its controls, the docs their text and the simulator its
checks.

The *controls* (thinking, search, person generation, output format …) are
rows with ``control=True``: everything about them follows from the row — the
``%%gemimg`` option (``--thinking high``), the Python keyword, the check of a
value (:meth:`ParamSpec.check_control`), the sweep axis, the label, the place in
``metadata`` (``wire``, a dotted path, and ``encode``), the simulator's check of
what arrives (:meth:`ParamSpec.check_wire`), the cache key and provenance
(``GenerationParams.controls``). Which models take a control is the model
table's ``controls`` column (:mod:`.models`). Adding a control means adding a
row here, its name to the models that document it and to
:class:`ParamValues`, and (optionally) a mark in the simulator's rendering.

The table is in the order sweep axes are listed (numbers first).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from gemimg_jupyter.domain.errors import ValidationError

__all__ = [
    "CONTROLS",
    "CONTROL_PARAMS",
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
    control : bool
        A control (see the module docstring): sent only when given, only to models whose ``controls`` name it.
    kind : str
        For controls, how a value is written: ``choice`` (one of ``choices``), ``int`` (within ``bounds``),
        ``flag`` (on/off) or ``pairs`` (``CATEGORY=THRESHOLD`` settings).
    choices : tuple of str
        The words a ``choice`` control takes (lower case), or the categories of ``pairs``.
    encode : callable or None
        The checked value as the gateway wants it under ``wire`` (default: as is).
    requires : (str, object) or None
        Another control and the value it must have for this one (``image_search`` needs ``search`` on).
    source : str
        Where the gateway documents the control (the reference's section).
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
    control: bool = False
    kind: str = ""
    choices: tuple[str, ...] = ()
    encode: Callable[[Any], Any] | None = None
    requires: tuple[str, object] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        label = self.label or self.name
        derived = {"label": label, "keyword": self.name, "axis": self.name, "option": f"--{label}"}
        for attr, value in derived.items():
            if getattr(self, attr) == "":
                object.__setattr__(self, attr, value)

    @property
    def sampling(self) -> bool:
        """True for a sampling control (temperature, top-p): only models with sampling controls take it."""
        return self.wire is not None and not self.control

    @property
    def range_text(self) -> str:
        """``0–2`` for a number, ``minimal, low, medium, high`` for a choice, empty otherwise."""
        if self.kind == "choice":
            return ", ".join(self.choices)
        return "" if self.bounds is None else f"{self.bounds[0]:g}–{self.bounds[1]:g}"

    @property
    def described(self) -> str:
        """The help with the range: ``Sampling temperature, 0–2``."""
        return f"{self.help}, {self.range_text}" if self.range_text else self.help

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

    # ---- controls -------------------------------------------------------------------------------------------------

    def check_control(self, value: object) -> Any:
        """``value`` as this control's canonical value, or a one-line :class:`ValidationError`.

        ``choice``: one of the words, any case, ``-`` for ``_`` (``HIGH`` → ``high``);
        ``int``: a whole number within the bounds; ``flag``: ``True``/``False`` or on/off words;
        ``pairs``: a mapping, ``CATEGORY=THRESHOLD`` text or a list of either, as a sorted tuple of pairs.
        """
        if self.kind == "choice":
            word = value.strip().lower().replace("-", "_") if isinstance(value, str) else value
            if word not in self.choices:
                raise ValidationError.not_allowed(self.name, value, f"use one of {', '.join(self.choices)}")
            return word
        if self.kind == "int":
            return self._check_int(value)
        if self.kind == "flag":
            if isinstance(value, bool):
                return value
            word = value.strip().lower() if isinstance(value, str) else value
            if word in _ON or word in _OFF:
                return word in _ON
            raise ValidationError.not_allowed(self.name, value, "use on or off (True or False)")
        assert self.kind == "pairs", f"{self.name} is not a control"
        return self._check_pairs(value)

    def _check_int(self, value: object) -> int:
        assert self.bounds is not None, f"{self.name} has bounds"
        lo, hi = self.bounds
        allowed = f"use a whole number from {lo:g} to {hi:g}"
        if isinstance(value, bool):
            raise ValidationError.not_allowed(self.name, value, allowed)
        try:
            number = float(value.strip() if isinstance(value, str) else value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValidationError.not_allowed(self.name, value, allowed) from None
        if not math.isfinite(number) or number != int(number) or not lo <= number <= hi:
            raise ValidationError.not_allowed(self.name, value, allowed)
        return int(number)

    def _check_pairs(self, value: object) -> tuple[tuple[str, str], ...]:
        items: Iterable[Any]
        if isinstance(value, Mapping):
            items = [f"{k}={v}" for k, v in value.items()]
        elif isinstance(value, str):
            items = [value]
        elif isinstance(value, Iterable):
            items = value
        else:
            items = [value]
        out: dict[str, str] = {}
        for item in items:
            if isinstance(item, (tuple, list)) and len(item) == 2:
                item = f"{item[0]}={item[1]}"
            category, eq, threshold = str(item).partition("=") if isinstance(item, str) else ("", "", "")
            cat = _SAFETY_PREFIX + category.strip().upper().removeprefix(_SAFETY_PREFIX)
            thr = threshold.strip().upper()
            if not eq or cat not in self.choices or thr not in SAFETY_THRESHOLDS:
                raise ValidationError.not_allowed(
                    self.name,
                    item,
                    f"write CATEGORY=THRESHOLD with CATEGORY one of {', '.join(c.removeprefix(_SAFETY_PREFIX) for c in self.choices)} "
                    f"and THRESHOLD one of {', '.join(SAFETY_THRESHOLDS)}",
                )
            out[cat] = thr
        if not out:
            raise ValidationError.not_allowed(self.name, value, "give at least one CATEGORY=THRESHOLD")
        return tuple(sorted(out.items()))

    def wire_value(self, value: Any) -> Any:
        """A checked value as the gateway wants it under :attr:`wire`."""
        return self.encode(value) if self.encode is not None else value

    def check_wire(self, value: object) -> Any:
        """What arrived under :attr:`wire` as the canonical value (the simulator's check); ``ValueError`` if malformed."""
        if self.kind == "choice":
            found = [c for c in self.choices if self.wire_value(c) == value]
            if not found:
                raise ValueError(f"use one of {', '.join(json_text(self.wire_value(c)) for c in self.choices)}")
            return found[0]
        if self.kind == "int":
            if type(value) is not int or self.bounds is None or not self.bounds[0] <= value <= self.bounds[1]:
                raise ValueError(f"use an integer from {self.bounds[0]:g} to {self.bounds[1]:g}" if self.bounds else "")
            return value
        if self.kind == "flag":
            if not isinstance(value, bool):
                raise ValueError("use true or false")
            return value
        if not isinstance(value, list) or not all(
            isinstance(v, dict) and set(v) == {"category", "threshold"} for v in value
        ):
            raise ValueError('use a list of {"category": ..., "threshold": ...} objects')
        try:
            return self._check_pairs([(v["category"], v["threshold"]) for v in value])
        except ValidationError as err:
            raise ValueError(str(err)) from None

    def value_label(self, value: Any) -> str:
        """A short label for a value (grid legends, status lines): ``high``, ``on``, ``HATE_SPEECH=OFF``."""
        if self.kind == "flag":
            return "on" if value else "off"
        if self.kind == "pairs":
            return ",".join(f"{c.removeprefix(_SAFETY_PREFIX)}={t}" for c, t in value)
        return str(value)


def json_text(value: object) -> str:
    """``value`` as JSON text (strings quoted), for messages about the request body."""
    return json.dumps(value)


_ON = frozenset({"on", "true", "yes", "1"})
_OFF = frozenset({"off", "false", "no", "0"})
_SAFETY_PREFIX = "HARM_CATEGORY_"
#: ``metadata.safetySettings`` categories and thresholds (reference §3.3).
SAFETY_CATEGORIES = tuple(
    _SAFETY_PREFIX + c for c in ("DANGEROUS_CONTENT", "HARASSMENT", "HATE_SPEECH", "SEXUALLY_EXPLICIT")
)
SAFETY_THRESHOLDS = ("OFF", "BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_ONLY_HIGH")


def _upper(value: str) -> str:
    return value.upper()


def _mime(value: str) -> str:
    return f"image/{value}"


def _safety_wire(value: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"category": category, "threshold": threshold} for category, threshold in value]


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
    # ---- controls: the gateway's metadata fields per model (reference §3.3 official, §3.4 normal tiers) ----
    ParamSpec("thinking", str, "Thinking level", None, metavar="LEVEL", wire="thinkingConfig.thinkingLevel",
              control=True, kind="choice", choices=("minimal", "low", "medium", "high"), encode=_upper,
              source="§3.3 thinkingConfig.thinkingLevel (3 Pro / 3.1 Flash official)"),
    ParamSpec("thinking_budget", int, "Thinking budget in tokens", None, (0, 24_576), metavar="N",
              wire="thinkingConfig.thinkingBudget", label="thinking-budget", control=True, kind="int",
              source="§3.3 thinkingConfig.thinkingBudget 0–24576 (3 Pro / 3.1 Flash official)"),
    ParamSpec("search", bool, "Ground the image in Google Search", None, wire="google_search", control=True,
              kind="flag", source="§3.4 google_search (3.1 Flash, normal tier)"),
    ParamSpec("image_search", bool, "Also use Google Image Search (needs --search)", None,
              wire="google_image_search", label="image-search", control=True, kind="flag", requires=("search", True),
              source="§3.4 google_image_search, needs google_search (3.1 Flash, normal tier)"),
    ParamSpec("person_generation", str, "Whether people may be drawn", None, metavar="WHO", wire="personGeneration",
              label="person", axis="person", control=True, kind="choice",
              choices=("allow_all", "allow_adult", "allow_none"), encode=_upper,
              source="§3.3 personGeneration (official)"),
    ParamSpec("output_format", str, "Image file format", None, metavar="FMT", wire="imageOutputOptions.mimeType",
              label="format", axis="format", control=True, kind="choice", choices=("png", "jpeg", "webp"),
              encode=_mime, source="§3.3 imageOutputOptions.mimeType (official)"),
    ParamSpec("quality", int, "JPEG compression quality (needs --format jpeg)", None, (0, 100), metavar="N",
              wire="imageOutputOptions.compressionQuality", control=True, kind="int", requires=("output_format", "jpeg"),
              source="§3.3 imageOutputOptions.compressionQuality, JPEG only, range not stated (0–100 assumed)"),
    ParamSpec("safety", tuple, "Safety threshold per harm category, CATEGORY=THRESHOLD (repeatable)", None,
              metavar="CATEGORY=THRESHOLD", wire="safetySettings", axis=None, control=True, kind="pairs",
              choices=SAFETY_CATEGORIES, encode=_safety_wire, source="§3.3 safetySettings (official)"),
    ParamSpec("max_output_tokens", int, "Output token limit", None, (1, 32_768), metavar="N", wire="maxOutputTokens",
              label="max-tokens", control=True, kind="int",
              source="§3.3 maxOutputTokens, default 32768 (official; the default is taken as the limit)"),
    ParamSpec("orientation", str, "Orientation", None, metavar="WAY", wire="orientation", control=True,
              kind="choice", choices=("landscape", "portrait"), source="§3.4 orientation (2.5 / 3 Pro, normal tier)"),
)  # fmt: skip

#: The table by parameter name.
PARAMS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAM_SPECS}
#: The parameters given as plain values under their own name (model, size, resolution, temperature, top-p):
#: the keys of :class:`ParamValues`, of a ``defaults=`` mapping and of the magic's ``%config`` defaults.
VALUE_PARAMS: tuple[ParamSpec, ...] = tuple(
    spec for spec in PARAM_SPECS if spec.keyword == spec.name and not spec.control
)
#: The parameters only models with sampling controls take (temperature, top-p), in table order.
SAMPLING_PARAMS: tuple[ParamSpec, ...] = tuple(spec for spec in PARAM_SPECS if spec.sampling)
#: The controls (thinking, search, format …), in table order: sent only when given, to models that document them.
CONTROL_PARAMS: tuple[ParamSpec, ...] = tuple(spec for spec in PARAM_SPECS if spec.control)
#: The controls by name.
CONTROLS: dict[str, ParamSpec] = {spec.name: spec for spec in CONTROL_PARAMS}


class ParamValues(TypedDict, total=False):
    """The optional parameters of :meth:`~.models.GenerationParams.create` (``None``: not given)."""

    model: str | None
    size: str | None
    resolution: str | None
    temperature: float | str | None
    top_p: float | str | None
    # the controls (CONTROL_PARAMS), one key each
    thinking: str | None
    thinking_budget: int | str | None
    search: bool | str | None
    image_search: bool | str | None
    person_generation: str | None
    output_format: str | None
    quality: int | str | None
    safety: object
    max_output_tokens: int | str | None
    orientation: str | None


class ParamKwargs(ParamValues, total=False):
    """The parameter keywords of ``Session.params``/``generate`` (every row of the table with a keyword)."""

    reference_images: object


def check_keywords(where: str, kwargs: Mapping[str, Any], known: type = ParamKwargs) -> None:
    """Refuse a keyword the ``known`` ``TypedDict`` does not declare, as Python would for a misspelt argument."""
    keys = getattr(known, "__optional_keys__", frozenset()) | getattr(known, "__required_keys__", frozenset())
    for name in kwargs:
        if name not in keys:
            raise TypeError(f"{where}() got an unexpected keyword argument {name!r}")
