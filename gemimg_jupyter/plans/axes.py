"""Sweep axes: the axis names, the :class:`Axis` type and the parsing of ``NAME=VALUES`` (pure).

Each axis is written as ``NAME=VALUES``::

    temperature=0.2,0.8,1.4        a list
    temperature=0.2-1.4 [4]        4 evenly spaced values, both ends included
    top_p=1-0.6 (-0.2)             a step (descending ranges take a negative step)
    size=1:1,16:9                  aspect ratios (``16x9`` is read as ``16:9``)
    prompt=fox|cat|owl             search/replace: "fox" in the prompt becomes each value
    ref=none|a.png|a.png+b.png     reference-image sets (``+`` joins, ``none`` is no reference)

Values are separated by ``,``; when a spec contains ``|`` the separator is
``|``, and when it contains ``||`` it is ``||`` (for values that contain
commas or single bars).

:mod:`.plan` expands the axes into a plan and re-exports everything public here.
This module does no I/O: reference files are turned into
:class:`~.models.ReferenceImage` objects by the ``resolve_ref`` callable the
caller injects.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gemimg_jupyter.domain.errors import ValidationError
from gemimg_jupyter.domain.models import ReferenceImage, get_model
from gemimg_jupyter.domain.params import PARAM_SPECS, ParamSpec
from gemimg_jupyter.domain.text import plural

__all__ = [
    "AXIS_ALIASES",
    "AXIS_NAMES",
    "AXIS_PARAMS",
    "AXIS_TITLES",
    "MAX_AXIS_VALUES",
    "Axis",
    "Pairing",
    "RefResolver",
    "axis_from_values",
    "canonical_axis_name",
    "expand_range",
    "pair",
    "pair_axes",
    "parse_axis",
]

#: The parameters a sweep can vary, in their canonical spelling (the parameter table's axes, in its order).
AXIS_NAMES: tuple[str, ...] = tuple(spec.axis for spec in PARAM_SPECS if spec.axis)

#: Other spellings accepted for axis names (case-insensitive; ``-`` and ``_`` are alike).
AXIS_ALIASES: dict[str, str] = {
    "temp": "temperature",
    "t": "temperature",
    "topp": "top_p",
    "top_p": "top_p",
    "p": "top_p",
    "res": "resolution",
    "s": "size",
    "ratio": "size",
    "aspect": "size",
    "aspect_ratio": "size",
    # a control swept under a short axis name also answers to its parameter name (output_format → format)
    **{spec.name: spec.axis for spec in PARAM_SPECS if spec.control and spec.axis and spec.axis != spec.name},
    "m": "model",
    "sr": "prompt",
    "prompt_sr": "prompt",
    "refs": "ref",
    "reference": "ref",
    "references": "ref",
}

#: The parameter each axis sets (``format`` sets ``output_format``, ``ref`` sets ``references``).
AXIS_PARAMS: dict[str, str] = {spec.axis: spec.name for spec in PARAM_SPECS if spec.axis}
#: The controls that can be swept, by axis name.
_CONTROL_AXES: dict[str, ParamSpec] = {spec.axis: spec for spec in PARAM_SPECS if spec.control and spec.axis}

#: How each axis is titled in grid legends: its parameter's name (``ref`` is ``references``), the prompt's as search/replace.
AXIS_TITLES: dict[str, str] = {
    spec.axis: "prompt S/R" if spec.name == "prompt" else spec.name for spec in PARAM_SPECS if spec.axis
}

#: No single axis may expand to more values than this (guards ``[1000000]``).
MAX_AXIS_VALUES = 1000

#: Turns one reference token (a path or URL) into a :class:`ReferenceImage`.
RefResolver = Callable[[str], ReferenceImage]

#: The numeric axes (temperature, top-p) and their parameters, whose bounds they are checked against.
_NUMBERS: dict[str, ParamSpec] = {
    spec.axis: spec for spec in PARAM_SPECS if spec.axis and spec.bounds and not spec.control
}
_RESOLUTIONS = ("0.5K", "1K", "2K", "4K")
_NONE_TOKENS = frozenset({"none", "no", "off", "-", "()"})
_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_RANGE_RE = re.compile(
    rf"^(?P<lo>{_NUM})\s*-\s*(?P<hi>{_NUM})\s*(?:\[(?P<count>[^\]]*)\]|\((?P<step>[^)]*)\))?$",
)
_RATIO_RE = re.compile(r"^(\d{1,3})\s*[:xX×]\s*(\d{1,3})$")
_FLOAT_TOL = 1e-9


# ---------------------------------------------------------------- data types


@dataclass(frozen=True)
class Axis:
    """One swept parameter and its values.

    Attributes
    ----------
    name : str
        One of :data:`AXIS_NAMES`.
    values : tuple
        The values, already normalised: floats for ``temperature``/``top_p``,
        ``"16:9"`` for sizes, ``"2K"`` for resolutions, model ids, replacement
        strings for ``prompt`` (the first is also the search term), and tuples
        of :class:`~.models.ReferenceImage` for ``ref``.
    labels : tuple of str
        Short display strings, one per value (``0.2``, ``16:9``, ``fox``,
        ``a.png+b.png``, ``none``).
    partners : tuple of Axis
        Axes zipped onto this one (``--with``, :func:`pair`): value *i* of each
        partner goes with value *i* of this axis, so a paired axis of n values is
        n grid positions, not a cross product. Empty for a plain axis.
    """

    name: str
    values: tuple[Any, ...]
    labels: tuple[str, ...]
    partners: tuple[Axis, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        object.__setattr__(self, "partners", tuple(self.partners))

    def __len__(self) -> int:
        return len(self.values)

    @property
    def members(self) -> tuple[Axis, ...]:
        """This axis without partners, then each partner (one plain axis per swept parameter)."""
        if not self.partners:
            return (self,)
        return (Axis(self.name, self.values, self.labels), *self.partners)

    @property
    def title(self) -> str:
        """The axis title for legends (``prompt S/R`` for the prompt axis; ``model · resolution`` when paired)."""
        return " · ".join(AXIS_TITLES.get(m.name, m.name) for m in self.members)

    @property
    def shown_labels(self) -> tuple[str, ...]:
        """The labels a legend shows: this axis's, joined with its partners' (``gemini-3-pro-image · 2K``)."""
        if not self.partners:
            return self.labels
        return tuple(" · ".join(m.labels[i] for m in self.members) for i in range(len(self.values)))

    @property
    def spec(self) -> str:
        """The axis written back as ``NAME=VALUES`` (for provenance and logs)."""
        sep = "|" if self.name in ("prompt", "ref") or any("," in label for label in self.labels) else ","
        if any(sep in label for label in self.labels):
            sep = "||"
        return f"{self.name}={sep.join(self.labels)}"


# ---------------------------------------------------------------- paired axes


def pair_axes(lead: Axis, *partners: Axis) -> Axis:
    """Zip ``partners`` onto ``lead``: value *i* of each goes with value *i* of ``lead`` (``--with``).

    Raises
    ------
    ValidationError
        When a partner has another number of values than ``lead`` (one line naming both counts).
    """
    out = lead
    for partner in partners:
        for member in partner.members:
            if len(member.values) != len(lead.values):
                raise ValidationError(
                    f"--with {member.name} has {plural(len(member.values), 'value')} but the {lead.name} axis it pairs with has "
                    f"{len(lead.values)}; a paired axis needs one value per value, e.g. "
                    f"--sweep {lead.name}={','.join(lead.labels[:2])} --with {member.name}={_example(member.name)}",
                    field="sweep",
                    value=member.name,
                )
            out = Axis(out.name, out.values, out.labels, (*out.partners, member))
    return out


@dataclass(frozen=True)
class Pairing:
    """Axes to zip into one grid axis, not yet parsed (made by :func:`pair`; the session resolves references).

    ``specs`` are ``NAME=VALUES`` strings, ``(name, values)`` pairs or :class:`Axis` objects; the
    first leads, the others follow it value by value.
    """

    specs: tuple[str | tuple[str, Any] | Axis, ...]

    def resolve(self, resolve_ref: RefResolver | None = None) -> Axis:
        """Parse every member and zip them (:func:`pair_axes`)."""
        axes: list[Axis] = []
        for spec in self.specs:
            if isinstance(spec, Axis):
                axes.append(spec)
            elif isinstance(spec, str):
                axes.append(parse_axis(spec, resolve_ref=resolve_ref))
            else:
                axes.append(axis_from_values(spec[0], spec[1], resolve_ref=resolve_ref))
        if len(axes) < 2:
            raise ValidationError(
                "pair() needs two or more axes, e.g. pair(model=[...], resolution=['1K', '2K'])",
                field="sweep",
                value=len(axes),
            )
        return pair_axes(axes[0], *axes[1:])


def pair(*specs: str | Axis, **values: Any) -> Pairing:
    """Axes that vary together: ``pair(model=["nano-banana", "gemini-3-pro-image"], resolution=["1K", "2K"])``.

    The first axis (positional specs ``"model=a,b"`` first, then keywords in order) leads; each
    other one gives one value per value of it. Pass the result to ``gi.sweep(prompt, pair(...))``
    or in ``axes=[...]``; the grid labels the axis ``model · resolution``.
    """
    return Pairing((*specs, *values.items()))


# ---------------------------------------------------------------- axis names


def canonical_axis_name(name: str) -> str:
    """The canonical axis name for ``name`` or one of its aliases.

    Raises
    ------
    ValidationError
        For an unknown name; the message lists the known axes.
    """
    key = re.sub(r"[\s\-]+", "_", str(name).strip().lower())
    if key in AXIS_NAMES:
        return key
    if key in AXIS_ALIASES:
        return AXIS_ALIASES[key]
    known = ", ".join(AXIS_NAMES)
    if key == "seed":
        detail = f"Gemini takes no seed, so seed cannot be swept; use --repeats N for several samples (axes: {known})"
    else:
        detail = f"unknown sweep axis {str(name).strip()!r}; use one of {known}"
    raise ValidationError(detail, field="sweep", value=name)


# ---------------------------------------------------------------- parsing


def parse_axis(spec: str, *, resolve_ref: RefResolver | None = None) -> Axis:
    """Parse one ``NAME=VALUES`` sweep spec, as given to ``--sweep``.

    Parameters
    ----------
    spec : str
        For example ``"temperature=0.2-1.4 [4]"``, ``"size=1:1,16:9"`` or
        ``"prompt=fox|cat|owl"``.
    resolve_ref : callable, optional
        Turns a reference token (path or URL) into a
        :class:`~.models.ReferenceImage`; needed only for the ``ref`` axis.

    Returns
    -------
    Axis

    Raises
    ------
    ValidationError
        One line naming the bad part of the spec and what to write instead.
    """
    text = str(spec).strip()
    name_part, eq, values_part = text.partition("=")
    if not eq or not name_part.strip():
        raise ValidationError(
            f"sweep {text!r} needs NAME=VALUES, e.g. temperature=0.2,0.8,1.4 or size=1:1,16:9",
            field="sweep",
            value=spec,
        )
    name = canonical_axis_name(name_part)
    return _axis_from_tokens(name, _split_values(name, values_part), resolve_ref)


def axis_from_values(name: str, values: Sequence[Any] | str, *, resolve_ref: RefResolver | None = None) -> Axis:
    """Build an axis from Python values (the :func:`gemimg_jupyter.sweep` keyword form).

    Parameters
    ----------
    name : str
        An axis name or alias (``temperature``, ``temp``, ``size``, …).
    values : sequence or str
        The values: ``[0.2, 0.8]``, ``["1:1", "16:9"]``, ``["fox", "cat"]``
        (search/replace with the first), ``[None, "a.png", ["a.png", "b.png"]]``
        for reference sets. A string is parsed like the part after ``=`` in
        :func:`parse_axis` (``"0.2-1.4 [4]"``). Strings inside a numeric list
        may be ranges too.
    resolve_ref : callable, optional
        Loads reference files for the ``ref`` axis.

    Returns
    -------
    Axis
    """
    axis_name = canonical_axis_name(name)
    if isinstance(values, str):
        return _axis_from_tokens(axis_name, _split_values(axis_name, values), resolve_ref)
    if isinstance(values, (bytes, bytearray)) or not isinstance(values, Iterable):
        raise ValidationError(
            f"{axis_name} sweep values must be a list, e.g. {axis_name}={_example(axis_name)}",
            field=axis_name,
            value=values,
        )
    items = list(values)
    if not items:
        raise _no_values(axis_name)
    pairs: list[tuple[Any, str]] = []
    for item in items:
        pairs.extend(_convert_item(axis_name, item, resolve_ref))
    return _finish_axis(axis_name, pairs)


def expand_range(
    lo: float,
    hi: float,
    *,
    count: int | None = None,
    step: float | None = None,
    name: str = "value",
    text: str = "",
) -> list[float]:
    """Expand ``lo-hi [count]`` or ``lo-hi (step)`` into values (rounded to 6 decimals).

    Parameters
    ----------
    lo, hi : float
        The first and last value; ``hi`` may be below ``lo`` (descending).
    count : int, optional
        Evenly spaced values including both ends (at least 2).
    step : float, optional
        Distance between values; its sign must lead from ``lo`` towards
        ``hi``. ``hi`` is included when it lies on the step within float
        tolerance. Exactly one of ``count`` and ``step`` must be given.
    name, text : str
        Axis name and the range as written, for error messages.

    Returns
    -------
    list of float
    """
    shown = text or f"{lo:g}-{hi:g}"
    if (count is None) == (step is None):
        raise ValidationError(
            f"{name} range {shown!r} needs either a count [N] or a step (+S)", field=name, value=shown
        )
    if count is not None:
        if count < 2:
            raise ValidationError(
                f"{name} range {shown!r} asks for {count} values; a range needs [2] or more, e.g. [4]",
                field=name,
                value=shown,
            )
        if count > MAX_AXIS_VALUES:
            raise _too_many_values(name, f"range {shown!r}", count)
        if lo == hi:
            raise ValidationError(
                f"{name} range {shown!r} starts and ends at {lo:g}; give two different ends", field=name, value=shown
            )
        span = hi - lo
        out = [_round(lo + span * i / (count - 1)) for i in range(count - 1)]
        return [*out, _round(hi)]
    assert step is not None
    if step == 0 or not math.isfinite(step):
        raise ValidationError(f"{name} range {shown!r} has step {step:g}; use a non-zero step", field=name, value=shown)
    if (hi - lo) * step < 0:
        better = f"({'-' if step > 0 else '+'}{abs(step):g})"
        raise ValidationError(
            f"{name} range {shown!r} has step {step:+g}, which never reaches {hi:g}; use {better}",
            field=name,
            value=shown,
        )
    n = math.floor((hi - lo) / step + _FLOAT_TOL) + 1 if hi != lo else 1
    if n > MAX_AXIS_VALUES:
        raise _too_many_values(name, f"range {shown!r}", n)
    out = []
    for i in range(n):
        value = lo + i * step
        # clamp tiny overshoots so the last value never leaves [lo, hi]
        value = min(value, hi) if step > 0 else max(value, hi)
        out.append(_round(value))
    return out


def _split_values(name: str, text: str) -> list[str]:
    raw = text.strip()
    if not raw:
        raise _no_values(name)
    sep = "||" if "||" in raw else "|" if "|" in raw else ","
    parts = [_unquote(part.strip()) for part in raw.split(sep)]
    for part in parts:
        if part is None or (part == "" and name != "prompt"):
            raise ValidationError(
                f"{name}={raw} has an empty value; separate values with ',' "
                f"(or '|' / '||' when they contain commas), e.g. {name}={_example(name)}",
                field=name,
                value=raw,
            )
    return [part for part in parts if part is not None]


def _unquote(text: str) -> str | None:
    """Strip one pair of matching quotes; ``None`` for an empty unquoted token."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text if text else None


def _axis_from_tokens(name: str, tokens: Sequence[str], resolve_ref: RefResolver | None) -> Axis:
    pairs: list[tuple[Any, str]] = []
    for token in tokens:
        pairs.extend(_parse_token(name, token, resolve_ref))
    return _finish_axis(name, pairs)


def _parse_token(name: str, token: str, resolve_ref: RefResolver | None) -> list[tuple[Any, str]]:
    """One written value → one or more ``(value, label)`` pairs (ranges expand)."""
    if name in _NUMBERS:
        return [(v, _number_label(v)) for v in _parse_numbers(name, token)]
    if name in _CONTROL_AXES:
        return [_control_value(name, token)]
    if name == "size":
        return [_parse_size(token)]
    if name == "resolution":
        return [_parse_resolution(token)]
    if name == "model":
        return [_parse_model(token)]
    if name == "prompt":
        return [(token, token if token.strip() else "(empty)")]
    if name == "ref":
        if token.strip().lower() in _NONE_TOKENS:
            return [((), "none")]
        names = [part.strip() for part in token.split("+")]
        if any(not part for part in names):
            raise ValidationError(
                f"reference set {token!r} has an empty name; join files with +, e.g. a.png+b.png",
                field="ref",
                value=token,
            )
        refs = tuple(_resolve(part, resolve_ref) for part in names)
        return [(refs, "+".join(_basename(part) for part in names))]
    raise AssertionError(f"unhandled sweep axis {name!r}")  # pragma: no cover - names are canonical here


def _convert_item(name: str, item: Any, resolve_ref: RefResolver | None) -> list[tuple[Any, str]]:
    """One Python value → ``(value, label)`` pairs."""
    if name in _NUMBERS:
        if isinstance(item, str):
            return [(v, _number_label(v)) for v in _parse_numbers(name, item.strip())]
        value = _check_number(name, item)
        return [(value, _number_label(value))]
    if name in _CONTROL_AXES:
        return [_control_value(name, item)]
    if name == "ref":
        if item is None or (isinstance(item, str) and item.strip().lower() in _NONE_TOKENS):
            return [((), "none")]
        if not isinstance(item, (list, tuple, str, ReferenceImage)) and not _image_like(item):
            raise ValidationError(
                f"a ref value must be a file name, URL, ReferenceImage, a list of them or None, not {type(item).__name__}",
                field="ref",
                value=item,
            )
        members = list(item) if isinstance(item, (list, tuple)) else [item]
        refs: list[ReferenceImage] = []
        labels: list[str] = []
        for member in members:
            if isinstance(member, ReferenceImage):
                refs.append(member)
                labels.append(_basename(member.name))
            elif isinstance(member, str) and member.strip():
                refs.append(_resolve(member.strip(), resolve_ref))
                labels.append(_basename(member.strip()))
            elif resolve_ref is not None and _image_like(member):
                # a PIL image, bytes or a path object: the session's resolver loads and checks it
                ref = resolve_ref(member)
                refs.append(ref)
                labels.append(f"{_basename(ref.name)}#{ref.sha256[:6]}")
            else:
                raise ValidationError(
                    f"a reference must be a file name, URL or ReferenceImage, not {type(member).__name__}",
                    field="ref",
                    value=member,
                )
        return [(tuple(refs), "+".join(labels) if labels else "none")]
    if not isinstance(item, str):
        raise ValidationError(f"{name} values must be text, e.g. {name}={_example(name)}", field=name, value=item)
    if name == "prompt":
        return [(item, item.strip() or "(empty)")]
    return _parse_token(name, item.strip(), resolve_ref)


def _image_like(value: object) -> bool:
    """Bytes, a path object or a PIL image: things the session's resolver can load."""
    return isinstance(value, (bytes, bytearray, os.PathLike)) or (hasattr(value, "save") and hasattr(value, "size"))


def _parse_numbers(name: str, token: str) -> list[float]:
    match = _RANGE_RE.match(token.strip())
    if match is None:
        try:
            number = float(token)
        except ValueError:
            raise ValidationError(
                f"{name} {token!r} is not allowed; {_NUMBERS[name].allowed}, or a range like {_example(name)}",
                field=name,
                value=token,
            ) from None
        return [_check_number(name, number)]
    lo = _check_number(name, float(match["lo"]))
    hi = _check_number(name, float(match["hi"]))
    count_text, step_text = match["count"], match["step"]
    if count_text is None and step_text is None:
        raise ValidationError(
            f"{name} range {token!r} needs a count or a step: "
            f"{match['lo']}-{match['hi']} [4] for 4 values, or {match['lo']}-{match['hi']} (+0.2)",
            field=name,
            value=token,
        )
    if count_text is not None:
        try:
            count = int(count_text.strip())
        except ValueError:
            raise ValidationError(
                f"{name} range {token!r}: [{count_text}] is not a whole number of values, e.g. [4]",
                field=name,
                value=token,
            ) from None
        return expand_range(lo, hi, count=count, name=name, text=token)
    step_raw = (step_text or "").strip()
    try:
        step = float(step_raw)
    except ValueError:
        raise ValidationError(
            f"{name} range {token!r}: ({step_raw}) is not a step, write e.g. (+0.2)", field=name, value=token
        ) from None
    if not step_raw.startswith(("+", "-")) and hi < lo:
        step = -step  # an unsigned step follows the direction of the range
    return expand_range(lo, hi, step=step, name=name, text=token)


def _check_number(name: str, value: object) -> float:
    return _round(_NUMBERS[name].check_number(value, show_number=True))


def _control_value(name: str, item: object) -> tuple[Any, str]:
    spec = _CONTROL_AXES[name]
    value = spec.check_control(item)
    return value, spec.value_label(value)


def _parse_size(token: str) -> tuple[str, str]:
    match = _RATIO_RE.match(token.strip())
    if match is None:
        raise ValidationError(
            f"size {token!r} is not an aspect ratio; write W:H like 16:9 (sizes are listed, not ranges)",
            field="size",
            value=token,
        )
    ratio = f"{int(match[1])}:{int(match[2])}"
    return ratio, ratio


def _parse_resolution(token: str) -> tuple[str, str]:
    text = token.strip().upper()
    if text not in _RESOLUTIONS:
        raise ValidationError.not_allowed(
            "resolution", token, f"use {', '.join(_RESOLUTIONS)} (what the model supports)"
        )
    return text, text


def _parse_model(token: str) -> tuple[str, str]:
    spec = get_model(token.strip())
    return spec.id, token.strip()


def _resolve(token: str, resolve_ref: RefResolver | None) -> ReferenceImage:
    if resolve_ref is None:
        raise ValidationError(
            f"reference {token!r} cannot be loaded here; pass resolve_ref= to turn file names into images",
            field="ref",
            value=token,
        )
    try:
        return resolve_ref(token)
    except ValidationError:
        raise
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValidationError(
            f"reference {token!r} could not be loaded ({reason}); check the path", field="ref", value=token
        ) from None


def _finish_axis(name: str, pairs: Sequence[tuple[Any, str]]) -> Axis:
    if not pairs:
        raise _no_values(name)
    if len(pairs) > MAX_AXIS_VALUES:
        raise _too_many_values(name, "axis", len(pairs))
    seen: dict[Any, str] = {}
    for value, label in pairs:
        key = _dedup_key(name, value)
        if key in seen:
            both = "" if seen[key] == label else f" (as {seen[key]} and {label})"
            raise ValidationError(
                f"{name} value {label} is listed twice{both}; give each value once (--repeats N takes several samples)",
                field=name,
                value=label,
            )
        seen[key] = label
    if name == "prompt" and not pairs[0][0].strip():
        raise ValidationError(
            "the first prompt= value is the search term and cannot be empty, e.g. prompt=fox|cat",
            field="prompt",
            value="",
        )
    return Axis(name, tuple(v for v, _ in pairs), tuple(label for _, label in pairs))


def _dedup_key(name: str, value: Any) -> Any:
    if name == "ref":
        return tuple(ref.sha256 for ref in value)
    return value


# ---------------------------------------------------------------- small helpers


def _round(value: float) -> float:
    out = round(float(value), 6)
    return 0.0 if out == 0 else out


def _number_label(value: float) -> str:
    return repr(float(value))


def _basename(token: str) -> str:
    text = token.rstrip("/\\")
    for sep in ("/", "\\"):
        text = text.rsplit(sep, 1)[-1]
    return text or token


def _example(name: str) -> str:
    return {
        "temperature": "0.2-1.4 [4]",
        "top_p": "0.5,0.8,1",
        "size": "1:1,16:9",
        "resolution": "1K,2K",
        "model": "gemini-2.5-flash-image-official,gemini-3.1-flash-image-preview",
        "prompt": "fox|cat|owl",
        "ref": "none|a.png|a.png+b.png",
    }.get(name) or _control_example(name)


def _control_example(name: str) -> str:
    spec = _CONTROL_AXES.get(name)
    if spec is None:
        return "…"
    if spec.kind == "flag":
        return "off,on"
    if spec.kind == "int" and spec.bounds is not None:
        return f"{spec.bounds[0]:g},{spec.bounds[1]:g}"
    return ",".join(spec.choices[:2])


def _no_values(name: str) -> ValidationError:
    return ValidationError(
        f"sweep axis {name} has no values; give at least one, e.g. {name}={_example(name)}", field=name, value=""
    )


def _too_many_values(name: str, what: str, n: int) -> ValidationError:
    return ValidationError(
        f"{name} {what} gives {n:,} values; at most {MAX_AXIS_VALUES:,} per axis, use a coarser step or count",
        field=name,
        value=n,
    )
