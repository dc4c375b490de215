"""Parameter sweeps: axis specs (parsed in :mod:`.axes`, re-exported here) and the expanded plan (pure).

A sweep varies up to three parameters at once. Each axis is written as
``NAME=VALUES`` (``temperature=0.2-1.4 [4]``, ``prompt=fox|cat|owl``; the
syntax is in :mod:`.axes`). The first axis runs across (X), the second down
(Y), the third gives separate grids (Z).

:func:`plan_sweep` expands the axes into one :class:`SweepCell` per request and
validates every cell against its model (through
:meth:`~.models.GenerationParams.with_`) before anything is submitted.

Cell order
----------
``plan.cells[i].index == i`` and::

    index = ((repeat * nz + z) * ny + y) * nx + x

X varies fastest, then Y, then Z, then the repeat. The first ``nx·ny·nz``
requests therefore give one sample of every cell (a complete first pass of
every grid); later repeats add samples to cells that already have one.

This module does no I/O: reference files are turned into
:class:`~.models.ReferenceImage` objects by the ``resolve_ref`` callable the
caller injects.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from gemimg_jupyter.domain.errors import ValidationError
from gemimg_jupyter.domain.models import GenerationParams, get_model
from gemimg_jupyter.domain.params import SAMPLING_PARAMS
from gemimg_jupyter.domain.text import format_usd, plural
from gemimg_jupyter.plans.axes import (
    AXIS_ALIASES,
    AXIS_NAMES,
    AXIS_PARAMS,
    AXIS_TITLES,
    MAX_AXIS_VALUES,
    Axis,
    Pairing,
    RefResolver,
    _example,
    _no_values,
    axis_from_values,
    canonical_axis_name,
    expand_range,
    pair,
    pair_axes,
    parse_axis,
)

__all__ = [
    "AXIS_ALIASES",
    "AXIS_NAMES",
    "AXIS_TITLES",
    "CONFIRM_ABOVE_USD",
    "DEFAULT_MAX_REQUESTS",
    "MAX_AXES",
    "MAX_AXIS_VALUES",
    "MAX_REPEATS",
    "Axis",
    "Pairing",
    "Quote",
    "RefResolver",
    "SweepCell",
    "SweepPlan",
    "axis_from_values",
    "canonical_axis_name",
    "expand_range",
    "pair",
    "pair_axes",
    "parse_axis",
    "plan_sweep",
]

#: Sweeps estimated above this many USD need a yes first (``--yes``, ``yes=True``, the panel's "allow" box).
CONFIRM_ABOVE_USD = 1.0

MAX_AXES = 3
MAX_REPEATS = 16
DEFAULT_MAX_REQUESTS = 1000


@dataclass(frozen=True)
class SweepCell:
    """One request of a sweep: a grid position, a repeat index and its parameters.

    Attributes
    ----------
    index : int
        Position in :attr:`SweepPlan.cells` (see the module docstring for the order).
    x, y, z : int
        Value indexes along the X, Y and Z axes (0 where there is no such axis).
    repeat : int
        Which sample of this cell (0-based).
    params : GenerationParams
        The validated request.
    values : dict
        Axis name to this cell's value.
    labels : dict
        Axis name to this cell's display label.
    """

    index: int
    x: int
    y: int
    z: int
    repeat: int
    params: GenerationParams
    values: dict[str, Any] = field(default_factory=dict, hash=False)
    labels: dict[str, str] = field(default_factory=dict, hash=False)

    @functools.cached_property
    def key(self) -> str:
        """The store's request key: ``params.cache_key(repeat)`` (hashed once: a quote reads it several times)."""
        return self.params.cache_key(self.repeat)

    @property
    def position(self) -> tuple[int, int, int]:
        """``(x, y, z)``: the grid cell, shared by all repeats."""
        return (self.x, self.y, self.z)


@dataclass(frozen=True)
class SweepPlan:
    """The expanded, validated sweep.

    Attributes
    ----------
    base : GenerationParams
        The parameters every cell starts from.
    axes : tuple of Axis
        X, Y, Z in that order (zero to three of them).
    repeats : int
        Samples per cell.
    cells : tuple of SweepCell
        One per request, ordered X fastest, then Y, Z and repeat.
    parent : mapping or None
        For an edit, the image every cell edits (``cbid``, ``key``, ``sha256``), recorded as each
        new image's parent; ``None`` otherwise.
    """

    base: GenerationParams
    axes: tuple[Axis, ...]
    repeats: int
    cells: tuple[SweepCell, ...]
    parent: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def n_requests(self) -> int:
        """Requests the sweep makes (cells × repeats)."""
        return len(self.cells)

    @property
    def n_cells(self) -> int:
        """Distinct parameter combinations (grid cells over all Z grids)."""
        nx, ny, nz = self.shape
        return nx * ny * nz

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(nx, ny, nz)``; an absent axis counts as 1."""
        sizes = [len(axis.values) for axis in self.axes] + [1, 1, 1]
        return (sizes[0], sizes[1], sizes[2])

    @property
    def varying(self) -> tuple[str, ...]:
        """Names of the swept parameters, X first (a paired axis gives each of its members)."""
        return tuple(member.name for axis in self.axes for member in axis.members)

    @property
    def x_axis(self) -> Axis | None:
        """The axis across, if any."""
        return self.axes[0] if self.axes else None

    @property
    def y_axis(self) -> Axis | None:
        """The axis down, if any."""
        return self.axes[1] if len(self.axes) > 1 else None

    @property
    def z_axis(self) -> Axis | None:
        """The axis that splits the sweep into separate grids, if any."""
        return self.axes[2] if len(self.axes) > 2 else None

    @property
    def common(self) -> dict[str, Any]:
        """The parameters that are the same in every cell (for the grid header; a copy of :attr:`_common`).

        Keys, in order, among ``model``, ``resolution``, ``size``,
        ``temperature``, ``top_p``, ``references`` (a tuple of names) and
        ``prompt``. Parameters the model does not take (``None``) and an
        empty reference list are left out.
        """
        return dict(self._common)

    @functools.cached_property
    def _common(self) -> dict[str, Any]:
        """:attr:`common`, worked out once (a sweep's pages ask for it again and again; 5,000 cells take ~20 ms)."""
        out: dict[str, Any] = {}
        params = [cell.params for cell in self.cells] or [self.base]
        first = params[0]
        for name in ("model", "resolution", "size", "temperature", "top_p", "references", "prompt"):
            if name == "references":
                shas = {tuple(r.sha256 for r in p.references) for p in params}
                if len(shas) == 1 and first.references:
                    out[name] = tuple(r.name for r in first.references)
                continue
            value = getattr(first, name)
            if value is None or any(getattr(p, name) != value for p in params):
                continue
            out[name] = value
        return out

    @property
    def keys(self) -> tuple[str, ...]:
        """Every cell's request key, in cell order."""
        return tuple(cell.key for cell in self.cells)

    def cells_at(self, z: int = 0) -> tuple[SweepCell, ...]:
        """The cells of one Z grid, in cell order."""
        return tuple(cell for cell in self.cells if cell.z == z)

    def cell_at(self, x: int = 0, y: int = 0, z: int = 0, repeat: int = 0) -> SweepCell:
        """The cell at a grid position and repeat (computed from the cell order)."""
        nx, ny, nz = self.shape
        if not (0 <= x < nx and 0 <= y < ny and 0 <= z < nz and 0 <= repeat < self.repeats):
            raise IndexError(f"no cell at x={x}, y={y}, z={z}, repeat={repeat} in a {nx}×{ny}×{nz} sweep")
        return self.cells[((repeat * nz + z) * ny + y) * nx + x]

    def estimate_usd(self, cached_keys: Collection[str] = ()) -> float | None:
        """Estimated cost of the requests that are not cached.

        Parameters
        ----------
        cached_keys : collection of str
            Request keys the store already holds; those cost nothing.

        Returns
        -------
        float or None
            The sum of the per-request prices of the uncached cells (a model
            axis mixes prices), or ``None`` when one of them has no published
            price. ``0.0`` when everything is cached.
        """
        cached = _as_set(cached_keys)
        total = 0.0
        for cell in self.cells:
            if cached and cell.key in cached:
                continue
            price = cell.params.price_usd
            if price is None:
                return None
            total += price
        return total

    def n_cached(self, cached_keys: Collection[str] = ()) -> int:
        """How many of the requests are already in ``cached_keys``."""
        cached = _as_set(cached_keys)
        return sum(1 for cell in self.cells if cell.key in cached) if cached else 0

    def summary(self, cached_keys: Collection[str] = ()) -> str:
        """One line: ``6 cells × 2 repeats = 12 requests, 0 cached, ≈ $0.59``.

        The cost is the estimate for the uncached requests; when a model has
        no published price it reads ``cost unknown (… has no published price)``.
        """
        cached = _as_set(cached_keys)
        n = self.n_requests
        line = (
            f"{plural(self.n_cells, 'cell')} × {plural(self.repeats, 'repeat')} = "
            f"{plural(n, 'request')}, {self.n_cached(cached):,} cached, "
        )
        cost = self.estimate_usd(cached)
        if cost is not None:
            return line + f"≈ {format_usd(cost)}"
        unpriced = sorted({c.params.model for c in self.cells if c.params.price_usd is None})
        return line + f"cost unknown ({', '.join(unpriced)} has no published price)"


@dataclass(frozen=True)
class Quote:
    """What a plan costs now and whether it needs a yes first (made by ``Session.quote``).

    The magic's plan line, the panel's plan line and its "allow" box, and the
    refusal of ``Session.sweep`` all read one quote, so they cannot disagree.
    ``free_keys`` are the request keys that cost nothing now: ``cached`` requests
    have a stored image, ``adopted`` ones an unfinished ledger row that will finish,
    ``lost`` ones were paid for before and could not be collected (not paid again;
    with ``fresh`` they are paid again, and the line says so).
    """

    plan: SweepPlan
    free_keys: frozenset[str]
    cached: int
    adopted: int
    estimate_usd: float | None
    confirm_above_usd: float | None = CONFIRM_ABOVE_USD
    #: What the session's budget still allows before this plan (``None``: no budget).
    left_usd: float | None = None
    #: Requests paid for before and lost (the gateway could not find their tasks).
    lost: int = 0
    #: Made with ``fresh``: nothing stored counts, lost requests are paid again.
    fresh: bool = False

    @property
    def needs_confirmation(self) -> bool:
        """True when the estimate is above the threshold (an unknown price counts as $0; ``None`` never asks)."""
        limit = self.confirm_above_usd
        return limit is not None and (self.estimate_usd or 0.0) > limit

    @property
    def summary(self) -> str:
        """The plan line: ``6 cells × 2 repeats = 12 requests, 0 cached, ≈ $0.59`` (``; $0.40 of the budget left``)."""
        line = self.plan.summary(self.free_keys)
        if self.lost:
            line += (
                f"; {self.lost:,} paid before and lost are paid again (fresh)"
                if self.fresh
                else f"; {self.lost:,} paid before and lost, not paid again (fresh=True pays again)"
            )
        return line if self.left_usd is None else f"{line}; {format_usd(self.left_usd)} of the budget left"

    def refusal(self) -> ValidationError:
        """The one-line refusal of a sweep that :attr:`needs_confirmation` and got no yes."""
        assert self.confirm_above_usd is not None
        return ValidationError(
            f"this sweep would cost about {format_usd(self.estimate_usd or 0.0)} ({self.summary}), "
            f"over the {format_usd(self.confirm_above_usd)} confirmation threshold; add --yes (yes=True) to go ahead",
            field="sweep",
            value=self.plan.n_requests,
        )


# ---------------------------------------------------------------- planning


def plan_sweep(
    base: GenerationParams,
    axes: Sequence[Axis],
    repeats: int = 1,
    *,
    max_requests: int = DEFAULT_MAX_REQUESTS,
) -> SweepPlan:
    """Expand axes over ``base`` into validated cells.

    Parameters
    ----------
    base : GenerationParams
        The request every cell starts from.
    axes : sequence of Axis
        Zero to three axes: X (across), Y (down), Z (separate grids).
    repeats : int
        Samples per cell, 1 to 16 (Gemini has no seed; repeats show the variance).
    max_requests : int
        Refuse sweeps of more requests than this.

    Returns
    -------
    SweepPlan

    Raises
    ------
    ValidationError
        Too many axes, an axis given twice, an empty or unknown axis, a
        repeats count out of range, too many requests (the message names the
        count and the estimated cost), a prompt search term missing from the
        prompt, or a value the model does not accept (the model's own message).
    """
    axes = tuple(axes)
    _check_axes(axes, repeats)
    sizes = [len(axis.values) for axis in axes] + [1] * (MAX_AXES - len(axes))
    nx, ny, nz = sizes
    n_requests = nx * ny * nz * repeats
    if n_requests > max_requests:
        cost = _rough_cost(base, axes, n_requests)
        cost_text = f"≈ {format_usd(cost)}" if cost is not None else "cost unknown"
        raise ValidationError(
            f"{n_requests:,} requests ({cost_text}) is over the limit of {max_requests:,}; narrow the sweep",
            field="sweep",
            value=n_requests,
        )

    prompt_axis = next((m for axis in axes for m in axis.members if m.name == "prompt"), None)
    if prompt_axis is not None:
        _check_search_term(base.prompt, str(prompt_axis.values[0]))
    cells = _expand(base, axes, repeats, (nx, ny, nz), prompt_axis)
    return SweepPlan(base=base, axes=axes, repeats=repeats, cells=tuple(cells))


def _check_axes(axes: tuple[Axis, ...], repeats: int) -> None:
    """Refuse a repeats count out of range, too many axes, or an axis that is not one, twice, or empty."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= MAX_REPEATS:
        raise ValidationError.not_allowed("repeats", repeats, f"use a whole number from 1 to {MAX_REPEATS}")
    if len(axes) > MAX_AXES:
        raise ValidationError(
            f"at most {MAX_AXES} sweep axes (X, Y, Z); got {len(axes)}, drop one or fix it with a plain option",
            field="sweep",
            value=len(axes),
        )
    seen: set[str] = set()
    for axis in axes:
        if not isinstance(axis, Axis):
            raise ValidationError(
                f"sweep axes must be Axis objects (from parse_axis), not {type(axis).__name__}",
                field="sweep",
                value=axis,
            )
        for member in axis.members:
            _check_axis(member, seen, len(axis.values))


def _check_axis(axis: Axis, seen: set[str], n_values: int) -> None:
    """Refuse an axis that is not one, is given twice, is empty, or (paired) has another length than its lead."""
    if axis.name not in AXIS_NAMES:
        raise ValidationError(
            f"unknown sweep axis {axis.name!r}; use one of {', '.join(AXIS_NAMES)}", field="sweep", value=axis.name
        )
    if axis.name in seen:
        raise ValidationError(
            f"sweep axis {axis.name} is given twice; give it once with all its values, e.g. {axis.name}={_example(axis.name)}",
            field="sweep",
            value=axis.name,
        )
    seen.add(axis.name)
    if not axis.values:
        raise _no_values(axis.name)
    if len(axis.labels) != len(axis.values):
        raise ValidationError(
            f"sweep axis {axis.name} has {len(axis.values)} values but {len(axis.labels)} labels; give one label per value",
            field="sweep",
            value=axis.name,
        )
    if len(axis.values) != n_values:
        raise ValidationError(
            f"paired sweep axis {axis.name} has {len(axis.values)} values but its axis has {n_values}; "
            "give one value per value",
            field="sweep",
            value=axis.name,
        )


def _expand(
    base: GenerationParams,
    axes: tuple[Axis, ...],
    repeats: int,
    shape: tuple[int, int, int],
    prompt_axis: Axis | None,
) -> list[SweepCell]:
    """One validated cell per request, in the documented cell order (X fastest, then Y, Z, repeat)."""
    nx, ny, nz = shape
    swept = {member.name for axis in axes for member in axis.members}
    checked: dict[tuple[str, int], dict[str, Any]] | None = {} if swept <= _ALONE else None
    as_given = {f.name: getattr(base, f.name) for f in fields(base)}  # the base's fields, for cells made of it
    grid: dict[tuple[int, int, int], tuple[GenerationParams, dict[str, Any], dict[str, str]]] = {}
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                picks = (x, y, z)[: len(axes)]
                picked = [(m, i) for axis, i in zip(axes, picks, strict=True) for m in axis.members]
                values = {m.name: m.values[i] for m, i in picked}
                labels = {m.name: m.labels[i] for m, i in picked}
                if checked is not None:
                    params = _alone(base, as_given, picked, checked, swept, prompt_axis)
                else:
                    changes = _changes(base, values, swept, prompt_axis)
                    params = base.with_(**changes) if changes else base
                grid[(x, y, z)] = (params, values, labels)

    cells: list[SweepCell] = []
    for repeat in range(repeats):
        for z in range(nz):
            for y in range(ny):
                for x in range(nx):
                    params, values, labels = grid[(x, y, z)]
                    if repeat:  # each cell its own dicts (the first repeat takes the ones made above)
                        values, labels = dict(values), dict(labels)
                    cells.append(SweepCell(len(cells), x, y, z, repeat, params, values, labels))
    return cells


#: Axes whose values the model checks each on its own (the model is not swept, no control is): a sweep of
#: only these validates each axis value once against the base, and a cell is the base with the checked
#: values put in — the same parameters ``base.with_(...)`` of the cell would give, without validating the
#: cell again (5,000 cells of temperature × top_p: ~0.3 s → a few ms).
_ALONE = frozenset({"temperature", "top_p", "size", "resolution", "prompt"})


def _alone(
    base: GenerationParams,
    as_given: dict[str, Any],
    picked: list[tuple[Axis, int]],
    checked: dict[tuple[str, int], dict[str, Any]],
    swept: set[str],
    prompt_axis: Axis | None,
) -> GenerationParams:
    """A cell of axes in :data:`_ALONE`: each axis value validated once (``checked`` keeps it), then put together."""
    merged: dict[str, Any] = {}
    for member, i in picked:
        done = checked.get((member.name, i))
        if done is None:
            changes = _changes(base, {member.name: member.values[i]}, swept, prompt_axis)
            one = base.with_(**changes)  # raises the model's own one line for a value it refuses
            done = checked[(member.name, i)] = {name: getattr(one, name) for name in changes}
        merged |= done
    return GenerationParams(**(as_given | merged)) if merged else base


def _changes(
    base: GenerationParams, values: dict[str, Any], swept: set[str], prompt_axis: Axis | None
) -> dict[str, Any]:
    """The ``GenerationParams.with_`` arguments for one cell."""
    changes: dict[str, Any] = {}
    for name, value in values.items():
        if name == "prompt":
            assert prompt_axis is not None
            changes["prompt"] = base.prompt.replace(str(prompt_axis.values[0]), str(value))
        elif name == "ref":
            changes["references"] = tuple(value)
        else:
            changes[AXIS_PARAMS.get(name, name)] = value
    model = changes.get("model")
    if model is not None:
        spec = get_model(model)
        if not spec.sampling:
            # The base's sampling values are defaults here, not a request; a swept
            # temperature/top_p still reaches the model and is refused by it.
            for param in SAMPLING_PARAMS:
                if param.axis not in swept:
                    changes[param.name] = None
    return changes


def _check_search_term(prompt: str, term: str) -> None:
    if term in prompt:
        return
    hint = ""
    lowered = prompt.lower().find(term.lower())
    if lowered >= 0:
        hint = f" (it appears as {prompt[lowered : lowered + len(term)]!r}; the match is case-sensitive)"
    raise ValidationError(
        f"prompt search term {term!r} is not in the prompt{hint}; "
        "the first prompt= value must appear in the prompt, and each value replaces it",
        field="prompt",
        value=term,
    )


def _rough_cost(base: GenerationParams, axes: Sequence[Axis], n_requests: int) -> float | None:
    """Cost of a sweep too big to expand: prices from the model axis, or the base model."""
    model_axis = next((m for axis in axes for m in axis.members if m.name == "model"), None)
    if model_axis is None:
        price = base.price_usd
        return None if price is None else price * n_requests
    per_model = n_requests / len(model_axis.values)
    total = 0.0
    for model in model_axis.values:
        price = get_model(str(model)).price_usd
        if price is None:
            return None
        total += price * per_model
    return total


# ---------------------------------------------------------------- small helpers


def _as_set(keys: Collection[str]) -> Collection[str]:
    return keys if isinstance(keys, (set, frozenset, dict)) else set(keys)
