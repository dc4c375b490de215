"""The Python API: the session and everything a user holds or asks for.

==============  ======================================================================
``session``     :class:`Session`, the default session, ``generate``/``sweep``/``picks``
``results``     :class:`Result` (a Protocol) and :class:`SweepResult`
``budget``      quotes, estimates, spent and saved, the ``max_cost_usd`` check
``edits``       finding, editing, picking and reporting an image after it was made
``lineage``     an image's parents and the edit-chain strip
``report``      the self-contained HTML report
``progress``    the one-line bar shown while a script waits
``compare``     the comparison view as plain data (a face shows it)
``earlier``     what an earlier process left: its sweeps rebuilt, its jobs cancelled, its queued edits
==============  ======================================================================

This package's ``__init__`` is the one door from the faces (magics, panel, display) into the core:
it re-exports the session and the value types they show, so a face imports ``gemimg_jupyter.api``
and nothing deeper (``tests/test_layering.py`` checks it).
"""

from gemimg_jupyter.api.catalogue import today
from gemimg_jupyter.api.compare import CompareAxis, Comparison, compare_targets, set_viewer
from gemimg_jupyter.api.lineage import Lineage
from gemimg_jupyter.api.results import Result, SweepResult, count_jobs
from gemimg_jupyter.api.session import (
    Session,
    current_session,
    gateway_settings,
    get_session,
    latest,
    reset_session,
    simulator_settings,
)
from gemimg_jupyter.domain.durations import parse_duration
from gemimg_jupyter.domain.errors import ConfigError, GemimgError, redact
from gemimg_jupyter.domain.models import (
    DEFAULT_MODEL,
    MODELS,
    PIXELS_1K,
    GenerationParams,
    JobState,
    ModelSpec,
    ReferenceImage,
    get_model,
    merged_models,
    model_status,
    pixel_size,
    price_text,
    shown_text,
    validate_references,
)
from gemimg_jupyter.domain.params import CONTROL_PARAMS, CONTROLS, PARAMS, SAMPLING_PARAMS, VALUE_PARAMS, ParamSpec
from gemimg_jupyter.domain.settings import RATE_TIERS, Settings
from gemimg_jupyter.domain.text import format_usd, plural
from gemimg_jupyter.draw.formats import SUSPECT_MARK
from gemimg_jupyter.draw.images import load_reference, load_thumbnail, png_bytes, stored_size
from gemimg_jupyter.draw.sheets import contact_sheet, side_by_side, stack
from gemimg_jupyter.engine import Job
from gemimg_jupyter.gateway.references import check_reference_url
from gemimg_jupyter.ledger.store import LedgerRow
from gemimg_jupyter.ledger.thumbs import load_thumb
from gemimg_jupyter.plans.plan import (
    AXIS_NAMES,
    CONFIRM_ABOVE_USD,
    MAX_REPEATS,
    Axis,
    Pairing,
    SweepPlan,
    canonical_axis_name,
    pair,
    parse_axis,
)
from gemimg_jupyter.probe import run_probe

__all__ = [
    "AXIS_NAMES",
    "CONFIRM_ABOVE_USD",
    "CONTROLS",
    "CONTROL_PARAMS",
    "DEFAULT_MODEL",
    "MAX_REPEATS",
    "MODELS",
    "PARAMS",
    "PIXELS_1K",
    "RATE_TIERS",
    "SAMPLING_PARAMS",
    "SUSPECT_MARK",
    "VALUE_PARAMS",
    "Axis",
    "CompareAxis",
    "Comparison",
    "ConfigError",
    "GemimgError",
    "GenerationParams",
    "Job",
    "JobState",
    "LedgerRow",
    "Lineage",
    "ModelSpec",
    "Pairing",
    "ParamSpec",
    "ReferenceImage",
    "Result",
    "Session",
    "Settings",
    "SweepPlan",
    "SweepResult",
    "canonical_axis_name",
    "check_reference_url",
    "compare_targets",
    "contact_sheet",
    "count_jobs",
    "current_session",
    "format_usd",
    "gateway_settings",
    "get_model",
    "get_session",
    "latest",
    "load_reference",
    "load_thumb",
    "load_thumbnail",
    "merged_models",
    "model_status",
    "pair",
    "parse_axis",
    "parse_duration",
    "pixel_size",
    "plural",
    "png_bytes",
    "price_text",
    "redact",
    "reset_session",
    "run_probe",
    "set_viewer",
    "shown_text",
    "side_by_side",
    "simulator_settings",
    "stack",
    "stored_size",
    "today",
    "validate_references",
]
