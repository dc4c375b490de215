"""Model capabilities, generation parameters and their validation, task states.

The registry restates what the ToAPIs pages document for each Gemini image
model; :class:`GenerationParams` is checked against it before anything is sent
or paid for. Every violation is a one-line :class:`~.errors.ValidationError`
naming the field, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import enum
import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from gemimg_jupyter.domain.catalogue import Catalogue
from gemimg_jupyter.domain.errors import ValidationError
from gemimg_jupyter.domain.params import (
    CONTROL_PARAMS,
    CONTROLS,
    DEFAULT_MODEL,
    PARAMS,
    SAMPLING_PARAMS,
    VALUE_PARAMS,
    ParamSpec,
    ParamValues,
    check_keywords,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "DEFAULT_MODEL",
    "FAILURE_STATES",
    "IMAGE_STATES",
    "MAX_PROMPT_CHARS",
    "MODELS",
    "PENDING_STATES",
    "PIXELS_1K",
    "RESUMABLE_STATES",
    "TERMINAL_STATES",
    "GenerationParams",
    "JobState",
    "ModelSpec",
    "ReferenceImage",
    "TaskStatus",
    "current_catalogue",
    "generic_spec",
    "get_model",
    "merged_models",
    "model_notices",
    "model_price",
    "model_status",
    "pixel_size",
    "price_text",
    "state_values",
    "stored_controls",
    "unlisted_default",
    "use_catalogue",
    "validate_controls",
]

#: Prompt length accepted where a model's page states no cap of its own.
MAX_PROMPT_CHARS = 32_000
#: The pages' "10MB" per reference image, read as decimal megabytes (the stricter reading).
MAX_REF_BYTES = 10_000_000
REF_FORMATS: tuple[str, ...] = ("jpeg", "png", "webp")

#: Output pixel sizes at 1K per aspect ratio (Google's table); 2K doubles, 4K quadruples.
PIXELS_1K: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "4:5": (896, 1152),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
    # only the 3.1 Flash tiers accept these
    "1:4": (512, 2048),
    "4:1": (2048, 512),
    "1:8": (384, 3072),
    "8:1": (3072, 384),
}
_RES_SCALE = {"0.5K": 0.5, "1K": 1.0, "2K": 2.0, "4K": 4.0}

_TEN_RATIOS = ("1:1", "3:2", "2:3", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")


@dataclass(frozen=True)
class ModelSpec:
    """What one model accepts, as documented by the gateway.

    ``sampling`` says whether ``temperature``/``topP`` go in ``metadata``;
    ``sends_resolution`` whether ``metadata.resolution`` is sent at all.
    ``price_usd`` is per request, ``None`` where no price is published.
    ``max_prompt_chars`` is the model's own prompt cap (1,000 on the 2.5
    preview page).

    ``controls`` names the controls (:data:`~.params.CONTROL_PARAMS`) the model's
    page documents; ``prices`` the price per resolution where one is known
    (``price_usd`` is the rest). ``shutdown``/``successor`` are the published
    retirement date (ISO) of the upstream model and the id to use instead.
    ``generic`` marks an id the live catalogue lists but this table does not
    know: sizes, resolutions and controls are passed through unchecked.
    """

    id: str
    label: str
    sizes: tuple[str, ...]
    resolutions: tuple[str, ...] = ("1K",)
    default_resolution: str = "1K"
    max_refs: int = 3
    max_ref_bytes: int = MAX_REF_BYTES
    ref_formats: tuple[str, ...] = REF_FORMATS
    sampling: bool = False
    sends_resolution: bool = False
    price_usd: float | None = None
    aliases: tuple[str, ...] = ()
    note: str = ""
    max_prompt_chars: int = MAX_PROMPT_CHARS
    controls: frozenset[str] = frozenset()
    prices: tuple[tuple[str, float], ...] = ()
    shutdown: str | None = None
    successor: str | None = None
    generic: bool = False

    def price_for(self, resolution: str) -> float | None:
        """Price of one request at ``resolution``: the per-resolution price, else ``price_usd`` (``None``: unpublished)."""
        if self.prices:
            return dict(self.prices).get(resolution)
        return self.price_usd

    @property
    def tier(self) -> str:
        """``official``, ``vip``, ``normal`` or ``unknown`` (an id only the catalogue lists)."""
        if self.generic:
            return "unknown"
        return "official" if "-official" in self.id else "vip" if self.id.endswith("-vip") else "normal"

    def takes(self, control: str) -> bool:
        """True when the model documents ``control`` (a generic model takes everything, unchecked)."""
        return self.generic or control in self.controls

    def past_shutdown(self, today: str) -> bool:
        """True when ``today`` (ISO date) is on or after the published shutdown date."""
        return self.shutdown is not None and today >= self.shutdown

    def shutdown_line(self) -> str:
        """One line for a model past its shutdown date, naming the successor."""
        instead = f"; use {self.successor} instead" if self.successor else "; no successor is published"
        return f"{self.id}: its upstream model was shut down on {self.shutdown}{instead} (the gateway may refuse it)"


#: Which controls each tier documents (reference §3.3, §3.4; the names are rows of PARAM_SPECS).
OFFICIAL_CONTROLS = frozenset({"person_generation", "output_format", "quality", "safety", "max_output_tokens"})
THINKING_CONTROLS = OFFICIAL_CONTROLS | {"thinking", "thinking_budget"}
SEARCH_CONTROLS = frozenset({"search", "image_search"})
ORIENTATION_CONTROLS = frozenset({"orientation"})

# Lifecycle, from Google's Gemini API deprecations page
# (https://ai.google.dev/gemini-api/docs/deprecations, as summarised in reference §14, 2026-12-07):
# gemini-2.5-flash-image shuts down 2026-10-02 (no replacement named); the 3.x "-preview" image ids
# shut down 2026-06-25, replaced by the GA ids gemini-3-pro-image / gemini-3.1-flash-image (2026-05-28),
# which ToAPIs serves as the "-official" ids of the same tier (reference §13 "Models").
_SHUTDOWN_25 = "2026-10-02"
_SHUTDOWN_3X_PREVIEW = "2026-06-25"


def _official_3x(
    ids: tuple[str, str], *, label: str, sizes: tuple[str, ...], aliases: tuple[str, ...]
) -> list[ModelSpec]:
    """A Gemini 3.x official model under its newer id and its older ``-preview-official`` id.

    Both ids are sent exactly as chosen (whether the gateway still maps the
    older one is not documented); the documented aliases stay with the older id.
    """
    newer, older = ids
    spec = ModelSpec(
        id=newer,
        label=label,
        sizes=sizes,
        resolutions=("1K", "2K", "4K"),
        max_refs=14,
        sampling=True,
        sends_resolution=True,
        note="no published price",
        controls=THINKING_CONTROLS,
    )
    older_spec = replace(
        spec, id=older, label=f"{label}, older id", aliases=aliases, shutdown=_SHUTDOWN_3X_PREVIEW, successor=newer
    )
    return [spec, older_spec]


MODELS: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec(
            id="gemini-2.5-flash-image-official",
            label="Gemini 2.5 Flash Image (official, Vertex)",
            sizes=_TEN_RATIOS,
            resolutions=("1K",),
            max_refs=3,
            sampling=True,
            price_usd=0.0488,
            aliases=("nano-banana-official",),
            note="1K-class model: 2K and 4K are not available",
            controls=OFFICIAL_CONTROLS,
            shutdown=_SHUTDOWN_25,
        ),
        ModelSpec(
            id="gemini-2.5-flash-image-preview",
            label="Gemini 2.5 Flash Image (preview)",
            sizes=("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3"),
            resolutions=("1K",),
            max_refs=14,
            sends_resolution=True,
            price_usd=0.012,
            aliases=("nano-banana",),
            max_prompt_chars=1_000,
            controls=ORIENTATION_CONTROLS,
            shutdown=_SHUTDOWN_25,
        ),
        ModelSpec(
            id="gemini-3-pro-image-preview",
            label="Gemini 3 Pro Image (preview)",
            sizes=_TEN_RATIOS,
            resolutions=("1K", "2K", "4K"),
            max_refs=6,
            sends_resolution=True,
            price_usd=None,
            aliases=("nano-banana-pro",),
            note="no published price",
            controls=ORIENTATION_CONTROLS,
            shutdown=_SHUTDOWN_3X_PREVIEW,
            successor="gemini-3-pro-image-official",
        ),
        ModelSpec(
            id="gemini-3.1-flash-image-preview",
            label="Gemini 3.1 Flash Image (preview)",
            sizes=(*_TEN_RATIOS, "1:4", "4:1", "1:8", "8:1"),
            resolutions=("0.5K", "1K", "2K", "4K"),
            max_refs=6,
            sends_resolution=True,
            price_usd=0.025,
            # §9: $0.0250/request, "pricing varies by resolution; 4K costs more than 1K": only 1K is known
            prices=(("1K", 0.025),),
            note="price published for 1K; 4K costs more",
            controls=SEARCH_CONTROLS,
            shutdown=_SHUTDOWN_3X_PREVIEW,
            successor="gemini-3.1-flash-image-official",
        ),
        *_official_3x(
            ("gemini-3-pro-image-official", "gemini-3-pro-image-preview-official"),
            label="Gemini 3 Pro Image (official, Vertex)",
            sizes=_TEN_RATIOS,
            aliases=("nano-banana-pro-official",),
        ),
        *_official_3x(
            ("gemini-3.1-flash-image-official", "gemini-3.1-flash-image-preview-official"),
            label="Gemini 3.1 Flash Image (official, Vertex)",
            sizes=(*_TEN_RATIOS, "4:1", "8:1"),
            aliases=("nano-banana-2-official", "nano-banana-2-lite-official"),
        ),
        ModelSpec(
            id="gemini-3-pro-image-preview-vip",
            label="Gemini 3 Pro Image (VIP)",
            sizes=_TEN_RATIOS,
            resolutions=("1K", "2K", "4K"),
            default_resolution="2K",
            max_refs=14,
            sends_resolution=True,
            note="no published price",
        ),
        ModelSpec(
            id="gemini-3.1-flash-image-preview-vip",
            label="Gemini 3.1 Flash Image (VIP)",
            sizes=_TEN_RATIOS,
            resolutions=("1K", "2K", "4K"),
            max_refs=14,
            sends_resolution=True,
            note="no published price",
        ),
    )
}
_ALIASES = {alias: spec.id for spec in MODELS.values() for alias in spec.aliases}
#: A listed id the built-in table does not know may take this many references (a conservative default).
GENERIC_MAX_REFS = 3


class _Live:
    """The gateway's catalogue in use (one per process: the last one read), merged into :func:`get_model`."""

    catalogue: Catalogue | None = None


def use_catalogue(catalogue: Catalogue | None) -> None:
    """Merge ``catalogue`` into the model table (``None``: the built-in table alone)."""
    _Live.catalogue = catalogue


def current_catalogue() -> Catalogue | None:
    """The catalogue merged into the model table, if one was read."""
    return _Live.catalogue


def generic_spec(model_id: str) -> ModelSpec:
    """The spec of a listed id the built-in table does not know: sizes, resolutions and controls unchecked."""
    return ModelSpec(
        id=model_id,
        label="listed by the gateway; not in the built-in table",
        sizes=tuple(PIXELS_1K),
        resolutions=tuple(_RES_SCALE),
        max_refs=GENERIC_MAX_REFS,
        sends_resolution=True,
        note="not in the built-in table; sizes and controls are not checked here",
        generic=True,
    )


def get_model(name: str | None) -> ModelSpec:
    """Look a model up by id or alias; an id only the live catalogue lists gets a generic spec."""
    key = (name or DEFAULT_MODEL).strip()
    key = _ALIASES.get(key, key)
    found = MODELS.get(key)
    if found is not None:
        return found
    live = _Live.catalogue
    if live is not None and live.lists(key):
        return generic_spec(key)
    hint = "" if live is not None else " (or one the gateway's catalogue lists, once it is read)"
    aliases = ", ".join(_ALIASES)
    close = difflib.get_close_matches(key, [*_ALIASES, *MODELS], n=1)
    meant = f"did you mean {close[0]}? " if close else ""
    raise ValidationError.not_allowed(
        "model", name, f"{meant}use one of {', '.join(MODELS)}, or an alias: {aliases}{hint}"
    ) from None


def merged_models() -> dict[str, ModelSpec]:
    """The built-in table plus the ids only the live catalogue lists (generic specs), in that order."""
    live = _Live.catalogue
    extra = [] if live is None else [generic_spec(i) for i in live.listed if i not in MODELS and i not in _ALIASES]
    return {**MODELS, **{spec.id: spec for spec in extra}}


def model_price(spec: ModelSpec, resolution: str) -> float | None:
    """One request's price at ``resolution``: the gateway's published price, else the table's."""
    live = _Live.catalogue
    found = live.price(spec.id, resolution) if live is not None else None
    return found if found is not None else spec.price_for(resolution)


def price_text(spec: ModelSpec) -> str:
    """``$0.0488/image``, ``0.5K $0.018 · 1K $0.025 …`` where prices differ, or ``no published price``."""
    prices = {res: model_price(spec, res) for res in spec.resolutions}
    known = {res: p for res, p in prices.items() if p is not None}
    if not known:
        return "no published price"
    if len(set(known.values())) == 1 and len(known) == len(prices):
        return f"${next(iter(known.values())):.4g}/image"
    return " · ".join(f"{res} " + ("no published price" if p is None else f"${p:.4g}") for res, p in prices.items())


def model_status(spec: ModelSpec, today: str) -> str:
    """``listed``, ``not listed``, ``past shutdown`` or ``not checked`` (no catalogue read yet)."""
    live = _Live.catalogue
    if live is not None and live.lists(spec.id):
        return "listed"
    if spec.past_shutdown(today):
        return "past shutdown"
    return "not checked" if live is None else "not listed"


def model_notices(spec: ModelSpec, today: str, *, checked: bool) -> list[str]:
    """What to say once before paying for ``spec``: unknown to the table, unlisted, or past its shutdown.

    ``checked``: the backend's word counts without a catalogue (the real gateway); the simulator
    serves every built-in id until its catalogue says otherwise.
    """
    live = _Live.catalogue
    if spec.generic:
        return [f"{spec.id}: not in the built-in table; sizes and controls are not checked here"]
    if live is not None and live.lists(spec.id):
        return []
    if spec.past_shutdown(today) and (live is not None or checked):
        return [spec.shutdown_line()]
    if live is not None:
        return [f"{spec.id}: the gateway's catalogue does not list it; the request may be refused"]
    return []


def unlisted_default(model: str, catalogue: Catalogue | None) -> str | None:
    """One line when ``catalogue`` (once read) does not list the default ``model``, naming an id to set instead.

    The id suggested is the model's successor when listed, else a listed built-in id of the same
    tier and family (Flash or Pro), else of the same tier, else any listed built-in id, else the
    first listed id; ``None`` when the catalogue lists ``model``, was never read, or lists nothing.
    """
    if catalogue is None or not catalogue.listed:
        return None
    try:
        spec = get_model(model)
    except ValidationError:
        spec = None
    shown = spec.id if spec is not None else model
    if catalogue.lists(shown):
        return None
    built_in = [m for m in MODELS if catalogue.lists(m) and not MODELS[m].successor]  # current ids first
    built_in += [m for m in MODELS if catalogue.lists(m) and m not in built_in]
    tier = [m for m in built_in if spec is not None and MODELS[m].tier == spec.tier]
    family = "-pro-" if spec is not None and "-pro-" in spec.id else "-flash-"
    ranked = [
        *([spec.successor] if spec is not None and spec.successor and catalogue.lists(spec.successor) else []),
        *(m for m in tier if family in m),
        *tier,
        *built_in,
        catalogue.listed[0],
    ]
    return (
        f"gemimg: the gateway's catalogue does not list the default model {shown}; "
        f"set another with Settings(model=...), e.g. '{ranked[0]}'"
    )


def pixel_size(size: str, resolution: str = "1K") -> tuple[int, int]:
    """Pixel width and height for an aspect ratio at a resolution."""
    w, h = PIXELS_1K[size]
    scale = _RES_SCALE[resolution]
    return round(w * scale), round(h * scale)


@dataclass(frozen=True)
class ReferenceImage:
    """A reference image: its bytes (uploaded once per hash) or a public URL.

    ``sha256`` identifies the content (for URLs, the URL text), and is what the
    request key and provenance record.
    """

    sha256: str
    name: str
    data: bytes | None = field(default=None, repr=False)
    url: str | None = None
    mime: str | None = None
    format: str | None = None

    @property
    def size_bytes(self) -> int:
        """Bytes of content (0 for URLs, which the gateway fetches itself)."""
        return len(self.data) if self.data is not None else 0

    @classmethod
    def from_url(cls, url: str) -> ReferenceImage:
        """A reference the gateway downloads itself."""
        digest = hashlib.sha256(url.encode()).hexdigest()
        return cls(sha256=digest, name=url.rsplit("/", 1)[-1][:60] or url[:60], url=url)


_MISSING: Any = object()


@dataclass(frozen=True)
class GenerationParams:
    """One image request, validated against its model.

    Build it with :meth:`create`, which fills defaults and raises
    :class:`ValidationError` for anything the model does not accept.
    ``temperature``/``top_p`` are ``None`` for models without sampling controls.
    """

    prompt: str
    model: str = PARAMS["model"].default
    size: str = PARAMS["size"].default
    resolution: str = PARAMS["resolution"].default
    temperature: float | None = PARAMS["temperature"].default
    top_p: float | None = PARAMS["top_p"].default
    references: tuple[ReferenceImage, ...] = PARAMS["references"].default
    controls: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def create(
        cls,
        prompt: str,
        *,
        references: Sequence[ReferenceImage] = (),
        defaults: Mapping[str, Any] | None = None,
        **values: Unpack[ParamValues],
    ) -> GenerationParams:
        """Fill defaults and validate.

        ``values`` are the table's parameters (:data:`~.params.PARAM_SPECS`), ``None`` meaning
        not given. Explicit values are checked strictly; ``defaults`` (for example the
        magic's ``%config`` traits) are applied only where the model takes them.
        """
        check_keywords("GenerationParams.create", values, ParamValues)
        d = dict(defaults or {})
        model, size, resolution = values.get("model"), values.get("size"), values.get("resolution")
        spec = get_model(model if model is not None else d.get("model"))
        text = validate_prompt(prompt, spec)
        size_v = validate_size(spec, size if size is not None else d.get("size", PARAMS["size"].default))
        res_default = d.get("resolution") or spec.default_resolution
        if resolution is None and res_default not in spec.resolutions:
            res_default = spec.default_resolution
        res_v = validate_resolution(spec, resolution if resolution is not None else res_default)
        sampled = {p.name: _sampling(spec, p, values.get(p.name), d.get(p.name, p.default)) for p in SAMPLING_PARAMS}
        refs = validate_references(spec, references)
        controls = validate_controls(spec, {p.name: values.get(p.name) for p in CONTROL_PARAMS})
        return cls(text, spec.id, size_v, res_v, references=refs, controls=controls, **sampled)

    def control(self, name: str) -> Any:
        """The value of control ``name`` (``None``: not given, not sent)."""
        return dict(self.controls).get(name)

    @property
    def controls_text(self) -> str:
        """The controls given, for status lines and captions: ``thinking high · search on`` (empty: none)."""
        return " · ".join(f"{CONTROLS[name].label} {CONTROLS[name].value_label(v)}" for name, v in self.controls)

    @property
    def spec(self) -> ModelSpec:
        """The model's capabilities."""
        return get_model(self.model)

    @property
    def pixel_size(self) -> tuple[int, int]:
        """Expected output size in pixels."""
        return pixel_size(self.size, self.resolution)

    @property
    def price_usd(self) -> float | None:
        """Price of one request at its resolution: the gateway's published price, else the table's (``None``: neither)."""
        return model_price(self.spec, self.resolution)

    def with_(self, **changes: Any) -> GenerationParams:
        """A re-validated copy with ``changes`` applied (used by sweeps; controls by name too)."""
        controls = dict(self.controls) | {k: changes.pop(k) for k in list(changes) if k in CONTROLS}
        merged = replace(self, **changes)
        values = {p.name: getattr(merged, p.name) for p in VALUE_PARAMS} | controls
        return GenerationParams.create(merged.prompt, references=merged.references, **values)

    def cache_key(self, repeat: int = 0) -> str:
        """Hash of everything that shapes the image, plus the repeat index (hashed once per repeat: a sweep's
        plan, quote and claim each ask for it)."""
        keys = self.__dict__.setdefault("_keys", {})  # a frozen dataclass: the memo is not a field
        key: str | None = keys.get(repeat)
        if key is None:
            payload = self.as_dict()
            payload["repeat"] = repeat
            blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
            key = keys[repeat] = hashlib.sha256(blob.encode()).hexdigest()
        return key

    @classmethod
    def from_stored(cls, data: Mapping[str, Any], references: tuple[ReferenceImage, ...] = ()) -> GenerationParams:
        """The parameters an :meth:`as_dict` stored (a ledger row, a queued edit), with ``references`` given back
        by the caller (it knows where their bytes are); not validated again: they were when first made."""
        return cls(
            prompt=str(data["prompt"]),
            model=str(data["model"]),
            size=str(data["size"]),
            resolution=str(data["resolution"]),
            temperature=data.get("temperature"),
            top_p=data.get("top_p"),
            references=references,
            controls=stored_controls(data.get("controls")),
        )

    def as_dict(self) -> dict[str, Any]:
        """Every parameter as plain data, references as their sha256 (for provenance, display metadata and keys)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["references"] = [r.sha256 for r in self.references]
        values.pop("controls")
        if self.controls:  # only when given: the keys of requests without controls stay what they were
            values["controls"] = {name: _plain(value) for name, value in self.controls}
        return {"model": values.pop("model"), **values}  # model first, as the ledger has always written it

    def request_body(self, image_urls: Sequence[str] = (), client_business_id: str | None = None) -> dict[str, Any]:
        """The JSON body for ``POST /v1/images/generations``."""
        spec = self.spec
        body: dict[str, Any] = {"model": self.model, "prompt": self.prompt, "size": self.size, "n": 1}
        if image_urls:
            body["image_urls"] = list(image_urls)
        if client_business_id:
            body["client_business_id"] = client_business_id
        meta: dict[str, Any] = {}
        if spec.sampling:
            meta.update({p.wire: getattr(self, p.name) for p in SAMPLING_PARAMS if p.wire})
        if spec.sends_resolution:
            meta["resolution"] = self.resolution
        for name, value in self.controls:
            control = CONTROLS[name]
            assert control.wire is not None, f"control {name} has a wire path"
            *parents, leaf = control.wire.split(".")
            node = meta
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = control.wire_value(value)
        if meta:
            body["metadata"] = meta
        return body


# marks that change how text around them is shown (bidirectional overrides, isolates, embeddings)
_DIRECTION_MARKS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_BLANKS = frozenset("\u115f\u1160\u2800\u3164\uffa0")  # letters that draw nothing


def _invisible(char: str) -> bool:
    return char.isspace() or char in _BLANKS or unicodedata.category(char) in ("Cc", "Cf", "Zs", "Zl", "Zp")


def shown_text(text: str) -> str:
    """``text`` with direction-override marks written as escapes (``\\u202e``), safe to show next to other text."""
    return _DIRECTION_MARKS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def validate_prompt(prompt: object, spec: ModelSpec | None = None) -> str:
    """A non-empty prompt of printable text within the model's length limit."""
    if not isinstance(prompt, str):
        raise ValidationError.not_allowed("prompt", prompt, "give the prompt as text")
    text = prompt.strip()
    if not text:
        raise ValidationError("prompt is empty; write what the image should show", field="prompt", value=prompt)
    if all(_invisible(c) for c in text):
        raise ValidationError(
            f"prompt has only invisible characters ({text[:8]!a}); write what the image should show",
            field="prompt",
            value="",
        )
    limit = spec.max_prompt_chars if spec is not None else MAX_PROMPT_CHARS
    if len(text) > limit:
        where = f" on {spec.id}" if spec is not None and limit != MAX_PROMPT_CHARS else ""
        raise ValidationError(
            f"prompt is {len(text):,} characters; the limit{where} is {limit:,}, shorten it", field="prompt", value=""
        )
    bad = [c for c in text if (ord(c) < 32 and c not in "\n\t\r") or ord(c) == 127]
    if bad:
        raise ValidationError(f"prompt contains a control character ({bad[0]!r}); remove it", field="prompt", value="")
    return text


def validate_size(spec: ModelSpec, size: object) -> str:
    """An aspect ratio the model accepts (``16x9`` is read as ``16:9``)."""
    text = str(size).strip().replace("x", ":").replace("X", ":") if isinstance(size, str) else size
    if text not in spec.sizes:
        raise ValidationError(
            f"size {size!r} is not supported by {spec.id}; use one of {', '.join(spec.sizes)}", field="size", value=size
        )
    return str(text)


def validate_resolution(spec: ModelSpec, resolution: object) -> str:
    """A resolution the model accepts (case-insensitive: ``2k`` is ``2K``)."""
    text = str(resolution).strip().upper() if isinstance(resolution, str) else resolution
    if text not in spec.resolutions:
        extra = f" ({spec.note})" if spec.note and len(spec.resolutions) == 1 else ""
        raise ValidationError(
            f"resolution {resolution!r} is not supported by {spec.id}{extra}; use {' or '.join(spec.resolutions)}",
            field="resolution",
            value=resolution,
        )
    return str(text)


def _sampling(spec: ModelSpec, param: ParamSpec, explicit: object, default: object) -> float | None:
    if spec.generic:  # a model the table does not know: an explicit value is passed through, no default is sent
        return None if explicit is None else param.check_number(explicit)
    if not spec.sampling:
        if explicit is not None:
            raise ValidationError(
                f"{param.name} is not supported by {spec.id} (it takes no sampling controls); leave it out",
                field=param.name,
                value=explicit,
            )
        return None
    return param.check_number(explicit if explicit is not None else default)


def _plain(value: Any) -> Any:
    """A control value as JSON-able data (``safety`` pairs as a mapping)."""
    return dict(value) if isinstance(value, tuple) else value


def stored_controls(data: object) -> tuple[tuple[str, Any], ...]:
    """The ``controls`` of a stored ``as_dict()`` (the ledger's row) back as checked pairs, in table order."""
    if not isinstance(data, Mapping):
        return ()
    return tuple((c.name, c.check_control(data[c.name])) for c in CONTROL_PARAMS if data.get(c.name) is not None)


def validate_controls(spec: ModelSpec, given: Mapping[str, object]) -> tuple[tuple[str, Any], ...]:
    """The controls given (not ``None``), checked: each documented by the model, each value allowed, each
    requirement met (``image_search`` needs ``search``); in table order. Every refusal is one line."""
    out: dict[str, Any] = {}
    for control in CONTROL_PARAMS:
        value = given.get(control.name)
        if value is None:
            continue
        if not spec.takes(control.name):
            takes = ", ".join(c.label for c in CONTROL_PARAMS if spec.takes(c.name)) or "none"
            raise ValidationError(
                f"{control.label} is not documented for {spec.id} (its controls: {takes}); leave it out or pick another model",
                field=control.name,
                value=value,
            )
        out[control.name] = control.check_control(value)
    for name, value in out.items():
        needs = CONTROLS[name].requires
        if needs is not None and out.get(needs[0]) != needs[1]:
            other = CONTROLS[needs[0]]
            wanted = other.option if other.kind == "flag" else f"{other.option} {needs[1]}"
            raise ValidationError(
                f"{CONTROLS[name].label} needs {wanted}; add it or leave {CONTROLS[name].label} out",
                field=name,
                value=value,
            )
    return tuple(out.items())


def too_big_message(name: str, size: int, limit: int) -> str:
    """One line for a reference over the size limit, in decimal megabytes and exact bytes."""
    return (
        f"reference {name!r} is {size / 1e6:.1f} MB ({size:,} bytes); the limit is "
        f"{limit / 1e6:g} MB ({limit:,} bytes), shrink or re-encode it"
    )


def validate_references(spec: ModelSpec, references: Sequence[ReferenceImage]) -> tuple[ReferenceImage, ...]:
    """Count, size and format of reference images against the model's limits."""
    refs = tuple(references)
    if len(refs) > spec.max_refs:
        raise ValidationError(
            f"{len(refs)} reference images given; {spec.id} accepts at most {spec.max_refs}",
            field="references",
            value=len(refs),
        )
    for ref in refs:
        if ref.data is not None and ref.size_bytes > spec.max_ref_bytes:
            raise ValidationError(
                too_big_message(ref.name, ref.size_bytes, spec.max_ref_bytes), field="reference", value=ref.name
            )
        if ref.data is not None and ref.format not in spec.ref_formats:
            raise ValidationError(
                f"reference {ref.name!r} is {ref.format or 'not an image'}; "
                f"use {', '.join(f.upper() for f in spec.ref_formats)}",
                field="reference",
                value=ref.name,
            )
    return refs


class JobState(str, enum.Enum):
    """Where one job is. Terminal states are ``done``, ``cached``, ``failed``,
    ``blocked``, ``expired``, ``timeout``, ``cancelled`` and ``lost``.

    ``blocked`` is a task the gateway refused for a safety or content-policy
    reason: no image, shown with its reason, not as a generic failure.
    ``lost`` is paid but unreachable: the submit's answer was lost, the
    look-up by ``client_business_id`` found nothing and a second submit was
    refused as a duplicate; its price counts as spent and a re-run does not
    pay for it again (``fresh`` does).

    Every classification of the states lives here (the ledger's SQL, the grid,
    the display and the panel read them): :attr:`is_pending` (still moving),
    :attr:`is_terminal` (final), :attr:`has_image`, :attr:`is_resumable` (a
    process may pick the row up again: pending, or ``timeout`` whose task the
    gateway may still finish) and :attr:`shown_as_failed` (ended without an
    image for a reason shown as a failure: ``timeout`` is one too, while
    ``cancelled`` is not).
    """

    QUEUED = "queued"
    UPLOADING = "uploading"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    IN_PROGRESS = "in_progress"
    DOWNLOADING = "downloading"
    DONE = "done"
    CACHED = "cached"
    FAILED = "failed"
    BLOCKED = "blocked"
    EXPIRED = "expired"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def is_terminal(self) -> bool:
        """True once the job will not change by itself any more."""
        return self in TERMINAL_STATES

    @property
    def is_pending(self) -> bool:
        """True while the job may still change by itself (not terminal)."""
        return self in PENDING_STATES

    @property
    def has_image(self) -> bool:
        """True for ``done`` and ``cached``."""
        return self in IMAGE_STATES

    @property
    def is_resumable(self) -> bool:
        """True for a ledger row a later process may pick up: pending, or ``timeout``."""
        return self in RESUMABLE_STATES

    @property
    def shown_as_failed(self) -> bool:
        """True for ``failed``, ``blocked``, ``expired`` and ``timeout``: no image, and a reason to show."""
        return self in FAILURE_STATES

    @property
    def icon(self) -> str:
        """One character for the state, as status lines show it."""
        return _ICONS[self]

    def __str__(self) -> str:
        return self.value


#: The classifications of :class:`JobState` as sets of states (for plain words use :func:`state_values`:
#: an enum member hashes by its name, so a word is not found in a set of members).
IMAGE_STATES = frozenset({JobState.DONE, JobState.CACHED})
FAILURE_STATES = frozenset({JobState.FAILED, JobState.BLOCKED, JobState.EXPIRED, JobState.TIMEOUT, JobState.LOST})
TERMINAL_STATES = IMAGE_STATES | FAILURE_STATES | {JobState.CANCELLED}
PENDING_STATES = frozenset(JobState) - TERMINAL_STATES
RESUMABLE_STATES = PENDING_STATES | {JobState.TIMEOUT}
_ICONS = {
    JobState.QUEUED: "◌",
    JobState.UPLOADING: "↑",
    JobState.SUBMITTING: "→",
    JobState.SUBMITTED: "◔",
    JobState.IN_PROGRESS: "◑",
    JobState.DOWNLOADING: "↓",
    JobState.DONE: "✓",
    JobState.CACHED: "✓",
    JobState.FAILED: "✗",
    JobState.BLOCKED: "⊘",
    JobState.EXPIRED: "✗",
    JobState.TIMEOUT: "⧗",
    JobState.CANCELLED: "⊘",
    JobState.LOST: "✗",
}


def state_values(states: frozenset[JobState]) -> tuple[str, ...]:
    """The states' plain words in declaration order (for SQL parameters and stable output)."""
    return tuple(state.value for state in JobState if state in states)


@dataclass(frozen=True)
class TaskStatus:
    """One parsed answer of the task status endpoint (or of submit).

    ``status`` is normalised to ``queued``, ``in_progress``, ``completed``,
    ``failed`` or ``unknown`` (a word the client does not know: shown to the
    user, never polled forever); ``raw_status`` keeps the gateway's own word.
    ``blocked`` marks a failure for a safety or content-policy reason.
    """

    id: str
    status: str
    progress: int = 0
    model: str | None = None
    created_at: int | None = None
    completed_at: int | None = None
    expires_at: int | None = None
    url: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    client_business_id: str | None = None
    billing_status: str | None = None
    cost_usd: float | None = None
    raw_status: str | None = None
    blocked: bool = False
    model_text: str | None = None

    @property
    def is_terminal(self) -> bool:
        """``completed`` or ``failed``."""
        return self.status in ("completed", "failed")
