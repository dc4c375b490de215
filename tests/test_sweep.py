"""Sweep specs: parsing, range expansion, plan expansion, cost and error messages."""

from __future__ import annotations

import hashlib
import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gemimg_jupyter.domain.errors import ValidationError
from gemimg_jupyter.domain.models import GenerationParams, ReferenceImage
from gemimg_jupyter.domain.text import format_usd, plural
from gemimg_jupyter.plans.plan import (
    AXIS_NAMES,
    MAX_REPEATS,
    Axis,
    SweepPlan,
    axis_from_values,
    canonical_axis_name,
    expand_range,
    parse_axis,
    plan_sweep,
)

PROMPT = "A paper-cut fox in a forest"
PRICE = 0.0488  # gemini-2.5-flash-image-official, the default model


def fake_ref(token: str) -> ReferenceImage:
    """A resolver that needs no files: the content hash is the name's hash."""
    return ReferenceImage(sha256=hashlib.sha256(token.encode()).hexdigest(), name=token, data=b"x", format="png")


def base(**kw: object) -> GenerationParams:
    return GenerationParams.create(kw.pop("prompt", PROMPT), **kw)  # type: ignore[arg-type]


def one_line_error(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    assert msg, "empty message"
    return msg


# ------------------------------------------------------------------ parsing: values


@pytest.mark.parametrize(
    ("spec", "values", "labels"),
    [
        ("temperature=0.2,0.8,1.4", (0.2, 0.8, 1.4), ("0.2", "0.8", "1.4")),
        ("temperature=0.2-1.4 [4]", (0.2, 0.6, 1.0, 1.4), ("0.2", "0.6", "1.0", "1.4")),
        ("temperature=0.2-1.4 (+0.4)", (0.2, 0.6, 1.0, 1.4), ("0.2", "0.6", "1.0", "1.4")),
        ("temperature = 0.2 - 1.4 [ 4 ]", (0.2, 0.6, 1.0, 1.4), ("0.2", "0.6", "1.0", "1.4")),
        ("top_p=1-0.6 (-0.2)", (1.0, 0.8, 0.6), ("1.0", "0.8", "0.6")),
        ("top_p=1-0.6 (0.2)", (1.0, 0.8, 0.6), ("1.0", "0.8", "0.6")),  # unsigned step follows the range
        ("top_p=1-0.5 [3]", (1.0, 0.75, 0.5), ("1.0", "0.75", "0.5")),
        ("temperature=0.1,0.5-1.5 [3],2", (0.1, 0.5, 1.0, 1.5, 2.0), ("0.1", "0.5", "1.0", "1.5", "2.0")),
        ("temperature=0-1 (+0.3)", (0.0, 0.3, 0.6, 0.9), ("0.0", "0.3", "0.6", "0.9")),  # 1.0 is off the step
        ("temperature=1|2", (1.0, 2.0), ("1.0", "2.0")),
        ("size=1:1,16:9", ("1:1", "16:9"), ("1:1", "16:9")),
        ("size=16x9, 9X16 ,4:3", ("16:9", "9:16", "4:3"), ("16:9", "9:16", "4:3")),
        ("resolution=1k,2K", ("1K", "2K"), ("1K", "2K")),
        ("resolution=0.5k|4k", ("0.5K", "4K"), ("0.5K", "4K")),
        ("prompt=fox|cat|owl", ("fox", "cat", "owl"), ("fox", "cat", "owl")),
        ("prompt=fox,cat", ("fox", "cat"), ("fox", "cat")),
        ("prompt=red fox, oil||grey wolf, ink", ("red fox, oil", "grey wolf, ink"), ("red fox, oil", "grey wolf, ink")),
        ("prompt=a|b||c|d", ("a|b", "c|d"), ("a|b", "c|d")),
        ('prompt=fox|""', ("fox", ""), ("fox", "(empty)")),
    ],
)
def test_parse_values(spec: str, values: tuple[object, ...], labels: tuple[str, ...]) -> None:
    axis = parse_axis(spec)
    assert axis.values == values
    assert axis.labels == labels
    assert len(axis) == len(values)


def test_model_axis_resolves_aliases_and_keeps_the_written_label() -> None:
    axis = parse_axis("m=nano-banana|gemini-3.1-flash-image-preview")
    assert axis.name == "model"
    assert axis.values == ("gemini-2.5-flash-image-preview", "gemini-3.1-flash-image-preview")
    assert axis.labels == ("nano-banana", "gemini-3.1-flash-image-preview")


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("temperature", "temperature"),
        ("temp", "temperature"),
        ("t", "temperature"),
        ("T", "temperature"),
        ("topp", "top_p"),
        ("top-p", "top_p"),
        ("top_p", "top_p"),
        ("topP", "top_p"),
        ("p", "top_p"),
        ("res", "resolution"),
        ("resolution", "resolution"),
        ("s", "size"),
        ("size", "size"),
        ("m", "model"),
        ("model", "model"),
        ("prompt", "prompt"),
        ("ref", "ref"),
        ("refs", "ref"),
    ],
)
def test_aliases(alias: str, name: str) -> None:
    assert canonical_axis_name(alias) == name
    assert parse_axis(f"{alias}={_sample_value(name)}").name == name


def _sample_value(name: str) -> str:
    return {
        "temperature": "0.5",
        "top_p": "0.5",
        "size": "1:1",
        "resolution": "1K",
        "model": "nano-banana",
        "prompt": "fox",
        "ref": "none",
    }[name]


def test_ref_sets_use_the_injected_resolver() -> None:
    seen: list[str] = []

    def resolver(token: str) -> ReferenceImage:
        seen.append(token)
        return fake_ref(token)

    axis = parse_axis("ref=none|a.png|a.png+dir/b.png", resolve_ref=resolver)
    assert axis.labels == ("none", "a.png", "a.png+b.png")
    assert axis.values[0] == ()
    assert [r.name for r in axis.values[1]] == ["a.png"]
    assert [r.name for r in axis.values[2]] == ["a.png", "dir/b.png"]
    assert seen == ["a.png", "a.png", "dir/b.png"]


def test_ref_errors_from_the_resolver_pass_through_or_are_wrapped() -> None:
    def refusing(token: str) -> ReferenceImage:
        raise ValidationError(f"reference file {token!r} does not exist", field="reference", value=token)

    with pytest.raises(ValidationError, match="reference file 'a.png' does not exist") as exc:
        parse_axis("ref=none|a.png", resolve_ref=refusing)
    one_line_error(exc)

    def broken(token: str) -> ReferenceImage:
        raise OSError("permission denied\nsecond line")

    with pytest.raises(ValidationError, match=r"reference 'a.png' could not be loaded \(permission denied\)") as exc:
        parse_axis("ref=a.png", resolve_ref=broken)
    one_line_error(exc)


def test_ref_without_resolver_says_what_to_pass() -> None:
    with pytest.raises(ValidationError, match="resolve_ref") as exc:
        parse_axis("ref=a.png")
    one_line_error(exc)
    assert parse_axis("ref=none").values == ((),)


# ------------------------------------------------------------------ parsing: errors


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ("temperature=0.2-3 [4]", r"^temperature 3\.0 is not allowed; use a number from 0 to 2$"),
        ("temperature=2.5", r"^temperature 2\.5 is not allowed; use a number from 0 to 2$"),
        ("temperature=-0.5,1", r"^temperature -0\.5 is not allowed; use a number from 0 to 2$"),
        ("top_p=0.5,1.5", r"^top_p 1\.5 is not allowed; use a number from 0 to 1$"),
        ("temperature=nan", r"temperature nan is not allowed"),
        ("temperature=hot", r"temperature 'hot' is not allowed; use a number from 0 to 2, or a range"),
        ("temperature=1-2 [0]", r"asks for 0 values; a range needs \[2\] or more"),
        ("temperature=1-2 [1]", r"asks for 1 values"),
        ("temperature=1-2 [x]", r"\[x\] is not a whole number"),
        ("temperature=1-1 [3]", r"starts and ends at 1"),
        ("temperature=0.2-1.4", r"needs a count or a step: 0\.2-1\.4 \[4\]"),
        ("temperature=0.2-1.4 (+0)", r"use a non-zero step"),
        ("temperature=0.2-1.4 (-0.4)", r"never reaches 1\.4; use \(\+0\.4\)"),
        ("temperature=1.4-0.2 (+0.4)", r"never reaches 0\.2; use \(-0\.4\)"),
        ("temperature=0.2-1.4 (fast)", r"\(fast\) is not a step"),
        ("temperature=0-2 (+0.000001)", r"gives 2,000,001 values; at most 1,000 per axis"),
        ("temperature=0-2 [5000]", r"gives 5,000 values; at most 1,000 per axis"),
        ("temperature=0.5,0.5", r"temperature value 0\.5 is listed twice; give each value once"),
        ("temperature=0.5,0.50", r"listed twice"),
        ("m=nano-banana,gemini-2.5-flash-image-preview", r"listed twice \(as nano-banana and gemini"),
        ("temperature=", r"sweep axis temperature has no values; give at least one"),
        ("temperature=0.2,,0.8", r"has an empty value"),
        ("temperature=0.2,0.8,", r"has an empty value"),
        ("size=1:1-16:9", r"size '1:1-16:9' is not an aspect ratio; write W:H like 16:9"),
        ("size=square", r"size 'square' is not an aspect ratio"),
        ("resolution=8K", r"resolution '8K' is not allowed; use 0\.5K, 1K, 2K, 4K"),
        ("model=dall-e-3", r"model 'dall-e-3' is not allowed; use one of gemini-2\.5-flash-image-official"),
        ("prompt=|cat", r"empty value"),
        ('prompt=""|cat', r"first prompt= value is the search term and cannot be empty"),
        ("ref=a.png+|b.png", r"reference set 'a.png\+' has an empty name"),
        ("seed=1,2,3", r"Gemini takes no seed.*--repeats"),
        ("cfg=7,8", r"unknown sweep axis 'cfg'; use one of temperature, top_p, size, resolution, model, prompt, ref"),
        ("temperature", r"needs NAME=VALUES, e\.g\. temperature="),
        ("=0.2,0.8", r"needs NAME=VALUES"),
    ],
)
def test_parse_errors_name_the_problem_on_one_line(spec: str, pattern: str) -> None:
    with pytest.raises(ValidationError, match=pattern) as exc:
        parse_axis(spec, resolve_ref=fake_ref)
    one_line_error(exc)


# ------------------------------------------------------------------ ranges (property tests)

_decimal = st.integers(min_value=0, max_value=2000).map(lambda n: n / 1000)


@settings(max_examples=150, deadline=None)
@given(lo=_decimal, hi=_decimal, n=st.integers(min_value=2, max_value=60))
def test_count_ranges_give_exactly_n_values_from_lo_to_hi(lo: float, hi: float, n: int) -> None:
    if abs(hi - lo) < n * 2e-6:  # values would coincide after rounding to 6 decimals
        with pytest.raises(ValidationError):
            parse_axis(f"temperature={lo}-{hi} [{n}]")
        return
    values = parse_axis(f"temperature={lo}-{hi} [{n}]").values
    assert len(values) == n
    assert values[0] == lo
    assert values[-1] == hi
    steps = [b - a for a, b in itertools.pairwise(values)]
    assert all(s > 0 for s in steps) if hi > lo else all(s < 0 for s in steps)
    assert all(min(lo, hi) <= v <= max(lo, hi) for v in values)


@settings(max_examples=150, deadline=None)
@given(
    lo=_decimal,
    hi=_decimal,
    step=st.integers(min_value=5, max_value=700).map(lambda n: n / 1000),
)
def test_step_ranges_stay_within_bounds(lo: float, hi: float, step: float) -> None:
    signed = step if hi >= lo else -step
    values = parse_axis(f"temperature={lo}-{hi} ({signed:+})").values
    assert values[0] == lo
    assert all(min(lo, hi) <= v <= max(lo, hi) for v in values)
    # evenly stepped, and the next step would leave the range (within float tolerance)
    for a, b in itertools.pairwise(values):
        assert math.isclose(b - a, signed, abs_tol=2e-6)
    assert abs(values[-1] + signed - lo) > abs(hi - lo) - 1e-6 or abs(values[-1] - hi) < 1e-6
    assert len(values) == math.floor(abs(hi - lo) / step + 1e-9) + 1


def test_step_range_includes_the_end_within_float_tolerance() -> None:
    # 1.4 - 0.2 is 1.1999999999999997 in binary; the end must still be included.
    assert parse_axis("t=0.2-1.4 (+0.4)").values[-1] == 1.4
    assert parse_axis("t=0.1-0.7 (+0.2)").values == (0.1, 0.3, 0.5, 0.7)
    assert parse_axis("t=0.7-0.1 (-0.2)").values == (0.7, 0.5, 0.3, 0.1)


def test_expand_range_needs_exactly_one_of_count_and_step() -> None:
    with pytest.raises(ValidationError, match="either a count"):
        expand_range(0.0, 1.0)
    with pytest.raises(ValidationError, match="either a count"):
        expand_range(0.0, 1.0, count=3, step=0.5)
    assert expand_range(0.5, 0.5, step=0.1) == [0.5]


# ------------------------------------------------------------------ Python API form


def test_axis_from_values_python_forms() -> None:
    assert axis_from_values("temperature", [0.2, 0.8]).values == (0.2, 0.8)
    assert axis_from_values("temp", [0, 1, 2]).labels == ("0.0", "1.0", "2.0")
    assert axis_from_values("temperature", ["0.2-1.4 [4]"]).values == (0.2, 0.6, 1.0, 1.4)
    assert axis_from_values("temperature", "0.2-1.4 [4]").values == (0.2, 0.6, 1.0, 1.4)
    assert axis_from_values("size", ["1:1", "16x9"]).values == ("1:1", "16:9")
    axis = axis_from_values("prompt", ["fox", "red cat, ink"])
    assert axis.values == ("fox", "red cat, ink")
    assert axis_from_values("top_p", range(0, 2)).values == (0.0, 1.0)


def test_axis_from_values_refs() -> None:
    ready = fake_ref("ready.png")
    axis = axis_from_values("ref", [None, "a.png", ["a.png", "b+c.png"], ready], resolve_ref=fake_ref)
    assert axis.labels == ("none", "a.png", "a.png+b+c.png", "ready.png")
    assert [len(v) for v in axis.values] == [0, 1, 2, 1]
    assert axis.values[3] == (ready,)


@pytest.mark.parametrize(
    ("name", "values", "pattern"),
    [
        ("temperature", [True], r"temperature True is not allowed"),
        ("temperature", [0.2, 3], r"^temperature 3\.0 is not allowed; use a number from 0 to 2$"),
        ("temperature", [], r"has no values"),
        ("temperature", 0.5, r"must be a list"),
        ("size", [16], r"size values must be text"),
        ("prompt", ["", "cat"], r"search term and cannot be empty"),
        ("ref", [3], r"a ref value must be a file name, URL, ReferenceImage, a list of them or None, not int"),
        ("ref", [{"a": 1}], r"a ref value must be .* not dict"),
        ("ref", [["a.png", 3]], r"a reference must be a file name, URL or ReferenceImage, not int"),
        ("seed", [1, 2], r"Gemini takes no seed"),
    ],
)
def test_axis_from_values_errors(name: str, values: object, pattern: str) -> None:
    with pytest.raises(ValidationError, match=pattern) as exc:
        axis_from_values(name, values, resolve_ref=fake_ref)  # type: ignore[arg-type]
    one_line_error(exc)


def test_axis_spec_round_trips() -> None:
    for spec in ("temperature=0.2,0.8", "size=1:1,16:9", "prompt=fox|cat", "prompt=a, b||c"):
        axis = parse_axis(spec)
        assert parse_axis(axis.spec) == axis


# ------------------------------------------------------------------ plans


def test_plan_order_x_fastest_then_y_z_repeat() -> None:
    axes = [parse_axis("t=0.2,0.8,1.4"), parse_axis("s=1:1,16:9"), parse_axis("res=1K")]
    plan = plan_sweep(base(), axes, repeats=2)
    assert plan.shape == (3, 2, 1)
    assert plan.n_cells == 6
    assert plan.n_requests == len(plan.cells) == 12
    order = [(c.x, c.y, c.z, c.repeat) for c in plan.cells]
    expected = [(x, y, 0, r) for r in range(2) for y in range(2) for x in range(3)]
    assert order == expected
    assert [c.index for c in plan.cells] == list(range(12))
    for c in plan.cells:
        assert plan.cell_at(c.x, c.y, c.z, c.repeat) is c
    with pytest.raises(IndexError):
        plan.cell_at(3, 0)


def test_plan_cells_carry_params_values_labels_and_keys() -> None:
    plan = plan_sweep(base(), [parse_axis("t=0.2,1.4"), parse_axis("size=1:1,16x9")], repeats=2)
    cell = plan.cell_at(1, 1, 0, 1)
    assert cell.params.temperature == 1.4
    assert cell.params.size == "16:9"
    assert cell.params.top_p == 0.95  # from the base
    assert cell.values == {"temperature": 1.4, "size": "16:9"}
    assert cell.labels == {"temperature": "1.4", "size": "16:9"}
    assert cell.key == cell.params.cache_key(1)
    # repeats share params but not keys; every key is unique
    assert plan.cell_at(1, 1, 0, 0).params == cell.params
    assert len(set(plan.keys)) == plan.n_requests


def test_plan_varying_and_common() -> None:
    plan = plan_sweep(base(), [parse_axis("t=0.2,0.8,1.4"), parse_axis("s=1:1,16:9")], repeats=2)
    assert plan.varying == ("temperature", "size")
    assert plan.common == {
        "model": "gemini-2.5-flash-image-official",
        "resolution": "1K",
        "top_p": 0.95,
        "prompt": PROMPT,
    }
    assert plan.x_axis is plan.axes[0]
    assert plan.y_axis is plan.axes[1]
    assert plan.z_axis is None


def test_plan_estimate_and_summary() -> None:
    plan = plan_sweep(base(), [parse_axis("t=0.2,0.8,1.4"), parse_axis("s=1:1,16:9")], repeats=2)
    assert plan.estimate_usd() == pytest.approx(12 * PRICE)
    assert plan.summary() == "6 cells × 2 repeats = 12 requests, 0 cached, ≈ $0.59"
    cached = set(plan.keys[:5])
    assert plan.estimate_usd(cached) == pytest.approx(7 * PRICE)
    assert plan.n_cached(cached) == 5
    assert plan.summary(cached) == "6 cells × 2 repeats = 12 requests, 5 cached, ≈ $0.34"
    assert plan.estimate_usd(list(plan.keys)) == 0.0
    assert plan.summary(plan.keys).endswith("12 cached, ≈ $0.00")
    assert plan.estimate_usd({"not-a-key"}) == pytest.approx(12 * PRICE)


def test_summary_singular_and_no_axes() -> None:
    plan = plan_sweep(base(), [], repeats=1)
    assert plan.shape == (1, 1, 1)
    assert plan.summary() == "1 cell × 1 repeat = 1 request, 0 cached, ≈ $0.05"
    plan4 = plan_sweep(base(), [], repeats=4)
    assert [c.repeat for c in plan4.cells] == [0, 1, 2, 3]
    assert plan4.summary().startswith("1 cell × 4 repeats = 4 requests")


def test_model_axis_mixes_prices_and_drops_sampling_where_unsupported() -> None:
    axis = parse_axis("m=nano-banana-official,nano-banana,gemini-3.1-flash-image-preview")
    plan = plan_sweep(base(), [axis], repeats=2)
    prices = [0.0488, 0.012, 0.025]
    assert plan.estimate_usd() == pytest.approx(2 * sum(prices))
    preview = plan.cell_at(1).params
    assert preview.model == "gemini-2.5-flash-image-preview"
    assert preview.temperature is None and preview.top_p is None
    assert plan.cell_at(0).params.temperature == 0.8
    assert "temperature" not in plan.common  # it differs (0.8 vs none)
    assert plan.common["size"] == "1:1"


def test_model_axis_from_a_model_without_sampling_gets_defaults_back() -> None:
    plan = plan_sweep(base(model="nano-banana"), [parse_axis("m=nano-banana,nano-banana-official")])
    assert plan.cell_at(0).params.temperature is None
    assert plan.cell_at(1).params.temperature == 0.8


def test_unpriced_model_makes_the_estimate_unknown() -> None:
    plan = plan_sweep(base(), [parse_axis("m=nano-banana-official,nano-banana-pro")])
    assert plan.estimate_usd() is None
    assert plan.summary() == (
        "2 cells × 1 repeat = 2 requests, 0 cached, cost unknown (gemini-3-pro-image-preview has no published price)"
    )
    # cached unpriced cells cost nothing, so the estimate is known again
    assert plan.estimate_usd({plan.cell_at(1).key}) == pytest.approx(PRICE)


def test_prompt_search_replace() -> None:
    plan = plan_sweep(base(prompt="A fox, then another fox"), [parse_axis("prompt=fox|cat|owl")])
    assert [c.params.prompt for c in plan.cells] == [
        "A fox, then another fox",
        "A cat, then another cat",
        "A owl, then another owl",
    ]
    assert "prompt" not in plan.common
    assert plan.cells[1].labels == {"prompt": "cat"}


def test_ref_axis_replaces_the_references() -> None:
    start = base(references=[fake_ref("base.png")])
    axis = parse_axis("ref=none|a.png|a.png+b.png", resolve_ref=fake_ref)
    plan = plan_sweep(start, [axis])
    assert [[r.name for r in c.params.references] for c in plan.cells] == [[], ["a.png"], ["a.png", "b.png"]]
    assert len({c.key for c in plan.cells}) == 3
    assert "references" not in plan.common
    fixed = plan_sweep(start, [parse_axis("t=0.2,0.4")])
    assert fixed.common["references"] == ("base.png",)


def test_z_axis() -> None:
    axes = [parse_axis("t=0.2,0.8"), parse_axis("s=1:1,16:9,9:16"), parse_axis("m=nano-banana-official,nano-banana")]
    # nano-banana (preview) has no temperature: the swept one is refused with the model's own message
    with pytest.raises(ValidationError, match="temperature is not supported by gemini-2.5-flash-image-preview"):
        plan_sweep(base(), axes)
    axes[2] = parse_axis("p=0.5,0.9")
    plan = plan_sweep(base(), axes)
    assert plan.shape == (2, 3, 2)
    assert [c.z for c in plan.cells] == [0] * 6 + [1] * 6
    assert len(plan.cells_at(1)) == 6
    assert plan.z_axis is not None and plan.z_axis.name == "top_p"


@pytest.mark.parametrize(
    ("axes", "kwargs", "pattern"),
    [
        (
            ["t=0.2,0.4", "p=0.5,0.6", "s=1:1,16:9", "prompt=fox|cat"],
            {},
            r"^at most 3 sweep axes \(X, Y, Z\); got 4",
        ),
        (["t=0.2,0.4", "temp=0.6"], {}, r"sweep axis temperature is given twice; give it once"),
        (["t=0.2"], {"repeats": 0}, r"^repeats 0 is not allowed; use a whole number from 1 to 16$"),
        (["t=0.2"], {"repeats": MAX_REPEATS + 1}, r"repeats 17 is not allowed"),
        (["t=0.2"], {"repeats": 2.0}, r"repeats 2\.0 is not allowed"),
        (
            ["t=0-2 [100]", "p=0-1 [100]"],
            {},
            r"^10,000 requests \(≈ \$488\.00\) is over the limit of 1,000; narrow the sweep$",
        ),
        (["t=0-2 [11]"], {"repeats": 10, "max_requests": 100}, r"^110 requests \(≈ \$5\.37\) is over the limit of 100"),
        (
            ["m=nano-banana-official,nano-banana-pro", "s=1:1,16:9"],
            {"max_requests": 3},
            r"^4 requests \(cost unknown\) is over the limit of 3",
        ),
        (["prompt=cat|dog"], {}, r"prompt search term 'cat' is not in the prompt; the first prompt= value must appear"),
        (["prompt=Fox|dog"], {}, r"it appears as 'fox'; the match is case-sensitive"),
        (["s=21:9,1:1", "m=nano-banana-official,nano-banana"], {}, r"size '21:9' is not supported by gemini-2\.5"),
        (["res=1K,2K"], {}, r"resolution '2K' is not supported by gemini-2\.5-flash-image-official"),
        (["ref=a.png+b.png+c.png+d.png"], {}, r"4 reference images given; .* accepts at most 3"),
    ],
)
def test_plan_errors(axes: list[str], kwargs: dict[str, object], pattern: str) -> None:
    parsed = [parse_axis(a, resolve_ref=fake_ref) for a in axes]
    with pytest.raises(ValidationError, match=pattern) as exc:
        plan_sweep(base(), parsed, **kwargs)  # type: ignore[arg-type]
    one_line_error(exc)


def test_plan_rejects_hand_built_bad_axes() -> None:
    with pytest.raises(ValidationError, match=r"^sweep axis temperature has no values") as exc:
        plan_sweep(base(), [Axis("temperature", (), ())])
    one_line_error(exc)
    with pytest.raises(ValidationError, match=r"unknown sweep axis 'seed'; use one of temperature") as exc:
        plan_sweep(base(), [Axis("seed", (1, 2), ("1", "2"))])
    one_line_error(exc)
    with pytest.raises(ValidationError, match="2 values but 1 labels"):
        plan_sweep(base(), [Axis("temperature", (0.2, 0.4), ("0.2",))])
    with pytest.raises(ValidationError, match="must be Axis objects"):
        plan_sweep(base(), ["temperature=0.2"])  # type: ignore[list-item]


def test_big_but_allowed_sweep_is_checked_before_it_is_built() -> None:
    # A million-cell request is refused from the count alone, without building cells.
    axes = [parse_axis("t=0-2 [1000]"), parse_axis("p=0-1 [1000]"), parse_axis("s=1:1,16:9")]
    with pytest.raises(ValidationError, match=r"^2,000,000 requests \(≈ \$97,600\.00\)"):
        plan_sweep(base(), axes)


def test_axis_names_and_plan_types() -> None:
    assert AXIS_NAMES[:7] == ("temperature", "top_p", "size", "resolution", "model", "prompt", "ref")
    # then the controls that sweep (issue #23), in the parameter table's order
    assert AXIS_NAMES[7:] == (
        "thinking", "thinking_budget", "search", "image_search", "person", "format", "quality", "max_output_tokens",
        "orientation",
    )  # fmt: skip
    plan = plan_sweep(base(), [parse_axis("t=0.2")])
    assert isinstance(plan, SweepPlan)
    assert plan.base == base()


def test_format_usd() -> None:
    assert format_usd(0.5856) == "$0.59"
    assert format_usd(488) == "$488.00"
    assert format_usd(1234.5) == "$1,234.50"
    assert format_usd(0.0488) == "$0.05"
    assert format_usd(0.004) == "$0.004"
    assert format_usd(None) == "n/a" and format_usd(None, missing="—") == "—"
    assert format_usd(0.0488, places=4) == "$0.0488"
    assert format_usd(0) == "$0.00"


def test_plural() -> None:
    assert [plural(n, "image") for n in (0, 1, 2, 1024)] == ["0 images", "1 image", "2 images", "1,024 images"]


def test_the_plan_module_and_the_sweep_function_have_their_own_names() -> None:
    import importlib

    import gemimg_jupyter as gi
    import gemimg_jupyter.plans.plan as plan_module

    assert callable(gi.sweep) and not isinstance(gi.sweep, type(plan_module))
    assert plan_module.plan_sweep is plan_sweep
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("gemimg_jupyter.sweep")
