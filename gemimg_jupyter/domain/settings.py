"""Frozen settings for the core, read from the environment or passed in.

Environment variables
---------------------
``TOAPIS_API_KEY``      the ToAPIs key (never printed; masked in every repr); on Colab, when it is
                        not set, the secret of that name (:mod:`.colab`)
``GEMIMG_BACKEND``      ``auto`` (default: ToAPIs when a key is set, else the simulator),
                        ``toapis`` or ``sim``
``GEMIMG_BASE_URL``     override the gateway URL (default ``https://toapis.com``)
``GEMIMG_OUTPUT_DIR``   where the ledger and images go (default ``gemimg_outputs``)
``GEMIMG_MAX_COST_USD`` a spending budget for the session (default: none)
``GEMIMG_SIM_LATENCY``  the built-in simulator's task time as ``min,max`` seconds (default ``1.5,4``)
``GEMIMG_RATE_TIER``    the account's rate tier, ``default``, ``vip`` or ``svip`` (sets both request buckets)
``GEMIMG_GRID_THEME``   the sweep grids' chrome: ``auto`` (default), ``light`` or ``dark``
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

from gemimg_jupyter.domain.colab import colab_key
from gemimg_jupyter.domain.errors import ConfigError, register_secret
from gemimg_jupyter.domain.params import DEFAULT_MODEL

__all__ = [
    "DEFAULT_BASE_URL",
    "GRID_THEMES",
    "RATE_TIERS",
    "Backend",
    "Rates",
    "RetryPolicy",
    "Secret",
    "Settings",
    "front_end_theme",
]

DEFAULT_BASE_URL = "https://toapis.com"
Backend = Literal["auto", "toapis", "sim"]
_BACKENDS: tuple[str, ...] = ("auto", "toapis", "sim")
#: The grids' chrome: ``auto`` follows the JupyterLab / Notebook 7 theme (:func:`front_end_theme`).
GRID_THEMES: tuple[str, ...] = ("auto", "light", "dark")
_THEME_FILE = Path("@jupyterlab", "apputils-extension", "themes.jupyterlab-settings")


def front_end_theme(env: Mapping[str, str] | None = None) -> Literal["light", "dark"]:
    """``dark`` when the JupyterLab / Notebook 7 theme this user chose is a dark one, else ``light``.

    Both front ends keep the choice in ``<config dir>/lab/user-settings/@jupyterlab/apputils-extension/
    themes.jupyterlab-settings`` (``$JUPYTERLAB_SETTINGS_DIR``, ``$JUPYTER_CONFIG_DIR`` or ``~/.jupyter``),
    on the machine the kernel runs on in a local setup. No file, an unreadable one, or a theme that
    follows the system (``adaptive-theme``) reads as ``light``.
    """
    env = os.environ if env is None else env
    folder = env.get("JUPYTERLAB_SETTINGS_DIR") or str(
        Path(env.get("JUPYTER_CONFIG_DIR") or Path.home() / ".jupyter") / "lab" / "user-settings"
    )
    try:
        text = (Path(folder).expanduser() / _THEME_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "light"
    text = re.sub(r"(?m)^\s*//.*$", "", text)  # the file is JSON with // comments
    if re.search(r'"adaptive-theme"\s*:\s*true', text):
        return "light"
    match = re.search(r'"theme"\s*:\s*"([^"]*)"', text)
    return "dark" if match and "dark" in match.group(1).lower() else "light"


class Rates(NamedTuple):
    """One rate tier's limits, named as the :class:`Settings` fields they set."""

    submit_rate: float
    submit_burst: int
    query_rate: float
    query_burst: int


#: The gateway's documented limits per tier: (submit rate/s, submit burst, query rate/s, query burst).
RATE_TIERS: dict[str, Rates] = {
    "default": Rates(5.0, 50, 50.0, 500),
    "vip": Rates(16.7, 167, 166.7, 1667),
    "svip": Rates(33.3, 334, 500.0, 5000),
}
_DEFAULT_RATES = RATE_TIERS["default"]


class Secret:
    """A string that never shows itself in ``repr``/``str``.

    ``reveal()`` is the only way to read it, and is only called where the
    ``Authorization`` header is built.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        """Return the secret text."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("Secret values are not picklable")


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying a request again.

    Only what can succeed later is retried: 429, 5xx and connection errors.
    ``Retry-After`` from the server wins over the exponential schedule.
    """

    max_tries: int = 6
    base: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.25
    max_retry_after: float = 60.0
    retry_statuses: tuple[int, ...] = (429, 500, 502, 503, 504)

    def should_retry(self, status_code: int | None) -> bool:
        """``None`` means a connection error, which is always worth another try."""
        return status_code is None or status_code in self.retry_statuses

    def delay(self, attempt: int, retry_after: float | None = None, *, rng: random.Random | None = None) -> float:
        """Seconds to wait before try number ``attempt + 1`` (``attempt`` counts from 1)."""
        r = rng or random
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_retry_after) + r.uniform(0, self.jitter)
        wait = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        return wait * (1 + r.uniform(-self.jitter, self.jitter)) if wait > 0 else 0.0


@dataclass(frozen=True)
class Settings:
    """Everything the core needs, as one immutable value.

    Use :meth:`from_env` to read the environment, and :func:`dataclasses.replace`
    (or :meth:`replace`) to derive a changed copy.
    """

    api_key: Secret | None = None
    backend: Backend = "auto"
    base_url: str | None = None
    output_dir: Path = field(default_factory=lambda: Path("gemimg_outputs"))
    model: str = DEFAULT_MODEL
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_in_flight: int | None = None
    # The gateway's rate limits; left out (None), each comes from ``rate_tier``'s row of RATE_TIERS.
    submit_rate: float = None  # type: ignore[assignment]  # filled in by __post_init__, never None after
    submit_burst: int = None  # type: ignore[assignment]
    query_rate: float = None  # type: ignore[assignment]
    query_burst: int = None  # type: ignore[assignment]
    job_timeout: float = 600.0
    status_timeout: float = 5.0
    download_timeout: float = 120.0
    rate_tier: str = "default"
    poll_first: float = 1.0
    poll_min: float = 0.5
    poll_max: float = 10.0
    #: The longest ``Retry-After`` honoured, seconds (also caps ``retry.max_retry_after``); a job's deadline
    #: still comes first.
    max_retry_after: float = 60.0
    download_max_bytes: int = 50 * 1024 * 1024
    max_cost_usd: float | None = None
    sim_options: Mapping[str, Any] = field(default_factory=dict)
    grid_theme: str = "auto"
    #: One line per environment value :meth:`from_env` could not use (it took the default instead),
    #: and one when the key came from Colab's secrets; a new session says each. Equality ignores them.
    notes: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.backend not in _BACKENDS:
            raise ConfigError(f"backend {self.backend!r} is not known; use one of {', '.join(_BACKENDS)}")
        if self.grid_theme not in GRID_THEMES:
            raise ConfigError(f"grid_theme {self.grid_theme!r} is not known; use one of {', '.join(GRID_THEMES)}")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be at least 1, not {self.max_in_flight}")
        if self.rate_tier not in RATE_TIERS:
            raise ConfigError(f"rate_tier {self.rate_tier!r} is not known; use one of {', '.join(RATE_TIERS)}")
        for name, tier_value in zip(Rates._fields, RATE_TIERS[self.rate_tier], strict=True):
            if getattr(self, name) is None:  # only rates not given: a copy (replace) keeps every rate it has
                object.__setattr__(self, name, tier_value)
        if isinstance(self.max_retry_after, bool) or not 0 <= self.max_retry_after < math.inf:  # refuses NaN too
            raise ConfigError(f"max_retry_after must be 0 or more seconds, not {self.max_retry_after!r}")
        if self.max_cost_usd is not None and not self.max_cost_usd >= 0:  # refuses NaN too
            raise ConfigError(f"max_cost_usd must be 0 or more, not {self.max_cost_usd}")
        key: object = self.api_key
        if isinstance(key, str):  # accept a plain string, store it masked
            object.__setattr__(self, "api_key", Secret(key) if key else None)
        if self.api_key is not None and not re.fullmatch(r"[\x21-\x7e]+", self.api_key.reveal()):
            raise ConfigError(
                "the API key contains a space, line break or non-ASCII character; copy it again, without them"
            )
        parts = urlsplit(self.base_url or DEFAULT_BASE_URL)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"base_url {self.base_url!r} is not an http(s) URL; write it like {DEFAULT_BASE_URL} (GEMIMG_BASE_URL)"
            )
        object.__setattr__(self, "output_dir", Path(self.output_dir))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``env`` (default ``os.environ``), then apply ``overrides``.

        A value that cannot be read names its variable in one line (in :attr:`notes`) and the default
        is used, so every other command keeps working; an unreadable budget is a budget of $0 (nothing
        is paid until it is fixed). Only ``GEMIMG_BACKEND`` and ``GEMIMG_BASE_URL``, which decide where
        requests (and money) go, stop with a :class:`ConfigError` instead of being guessed.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        notes: list[str] = []
        key = env.get("TOAPIS_API_KEY", "").strip()
        if not key and env is os.environ and (key := colab_key() or ""):  # on Colab: its Secrets panel
            notes.append("the ToAPIs key comes from Colab's secrets (TOAPIS_API_KEY); it is never printed")
        if key:
            values["api_key"] = Secret(key)
        backend = env.get("GEMIMG_BACKEND", "").strip().lower()
        if backend and backend not in _BACKENDS:
            raise ConfigError(f"GEMIMG_BACKEND={backend!r} is not known; use one of {', '.join(_BACKENDS)}")
        if backend:
            values["backend"] = backend
        if env.get("GEMIMG_BASE_URL", "").strip():
            values["base_url"] = env["GEMIMG_BASE_URL"].strip().rstrip("/")
        if env.get("GEMIMG_OUTPUT_DIR", "").strip():
            values["output_dir"] = Path(env["GEMIMG_OUTPUT_DIR"].strip())
        _read_env(env, values, notes)
        values.update(overrides)
        return cls(**values, notes=tuple(notes))

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied (a new ``rate_tier`` goes through :meth:`with_rate_tier`)."""
        tier = changes.pop("rate_tier", None)
        base = self if tier is None or tier == self.rate_tier else self.with_rate_tier(tier)
        return dataclasses.replace(base, **changes) if changes else base

    def with_rate_tier(self, tier: str) -> Settings:
        """A copy on another rate tier: rates still at this tier's values follow the new tier's table.

        Rates set by hand (different from this tier's table) stay as they are.
        """
        if tier not in RATE_TIERS:
            raise ConfigError(f"rate_tier {tier!r} is not known; use one of {', '.join(RATE_TIERS)}")
        return dataclasses.replace(
            self, rate_tier=tier, **self._tier_rates(RATE_TIERS[self.rate_tier], RATE_TIERS[tier])
        )

    def _tier_rates(self, old: Rates, new: Rates) -> dict[str, Any]:
        """The new tier's rates for the fields still at the old tier's values (rates set by hand stay)."""
        return {name: now for name, was, now in zip(Rates._fields, old, new, strict=True) if getattr(self, name) == was}

    @functools.cached_property
    def retry_policy(self) -> RetryPolicy:
        """``retry`` with its ``Retry-After`` cap lowered to :attr:`max_retry_after` (what the session uses)."""
        cap = min(self.retry.max_retry_after, self.max_retry_after)
        return self.retry if cap == self.retry.max_retry_after else dataclasses.replace(self.retry, max_retry_after=cap)

    @property
    def resolved_backend(self) -> Literal["toapis", "sim"]:
        """``auto`` resolved: ToAPIs when a key is set, else the simulator."""
        if self.backend == "auto":
            return "toapis" if self.api_key is not None else "sim"
        return self.backend

    @property
    def resolved_grid_theme(self) -> Literal["light", "dark"]:
        """``grid_theme`` with ``auto`` resolved by the front end's theme (:func:`front_end_theme`)."""
        return front_end_theme() if self.grid_theme == "auto" else "dark" if self.grid_theme == "dark" else "light"

    def require_key(self) -> Secret:
        """The key for the real backend, or a one-line ``ConfigError`` saying how to set it."""
        if self.api_key is None:
            raise ConfigError(
                "no ToAPIs API key: set TOAPIS_API_KEY (or use Settings(api_key=...)), "
                "or use the built-in simulator with GEMIMG_BACKEND=sim"
            )
        return self.api_key


def _read_env(env: Mapping[str, str], values: dict[str, Any], notes: list[str]) -> None:
    """The variables a wrong value of which only changes pacing or spending: a note and the default."""
    budget = env.get("GEMIMG_MAX_COST_USD", "").strip()
    if budget:
        try:
            values["max_cost_usd"] = float(budget)
            if not values["max_cost_usd"] >= 0:
                raise ValueError(budget)
        except ValueError:
            values["max_cost_usd"] = 0.0
            notes.append(
                f"GEMIMG_MAX_COST_USD={budget!r} is not a number of dollars (0 or more); "
                "using a budget of $0, so nothing is paid until it is fixed"
            )
    tier = env.get("GEMIMG_RATE_TIER", "").strip().lower()
    if tier in RATE_TIERS:
        values["rate_tier"] = tier
    elif tier:  # a wrong tier only slows or speeds the pacing
        notes.append(f"GEMIMG_RATE_TIER={tier!r} is not a rate tier ({', '.join(RATE_TIERS)}); using 'default'")
    theme = env.get("GEMIMG_GRID_THEME", "").strip().lower()
    if theme in GRID_THEMES:
        values["grid_theme"] = theme
    elif theme:  # a wrong theme only changes the grids' colours
        notes.append(f"GEMIMG_GRID_THEME={theme!r} is not a grid theme ({', '.join(GRID_THEMES)}); using 'auto'")
    latency = env.get("GEMIMG_SIM_LATENCY", "").strip()
    if latency:
        try:
            lo, _, hi = latency.partition(",")
            values["sim_options"] = {"latency": (float(lo), float(hi or lo))}
        except ValueError:
            notes.append(
                f"GEMIMG_SIM_LATENCY={latency!r} should be seconds as 'min,max', e.g. '0.5,2'; using the default"
            )
