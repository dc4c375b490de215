"""Why an image did not come: Gemini's ``finishReason`` words, each with its own outcome and hint (pure).

The gateway passes Gemini's reason through in a failed task's message (``finishReason IMAGE_SAFETY``,
§13). Each reason reads differently to a user: blocked by a filter, withheld as a recitation of
existing work, or "the model answered with text only". :func:`explain` turns a failure's words into
that one line; :data:`FINISH_REASONS` is the table (``blocked``: refused for safety or policy).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FINISH_REASONS", "FINISH_WORDS", "FinishReason", "explain", "failure_text", "find_reason"]


@dataclass(frozen=True)
class FinishReason:
    """One ``finishReason``: what happened (``outcome``), what to do (``hint``), and whether it is a refusal."""

    word: str
    outcome: str
    hint: str
    blocked: bool


#: Gemini's image finish reasons (Gemini API ``FinishReason``), in the order they are checked.
FINISH_REASONS: tuple[FinishReason, ...] = (
    FinishReason(
        "IMAGE_PROHIBITED_CONTENT",
        "blocked: the request asks for prohibited content",
        "change the subject; no setting allows it",
        True,
    ),
    FinishReason(
        "IMAGE_SAFETY",
        "blocked by the safety filter",
        "rephrase the prompt, or on an official model loosen --safety CATEGORY=THRESHOLD",
        True,
    ),
    FinishReason(
        "IMAGE_RECITATION",
        "withheld: the image was too close to existing work (recitation)",
        "describe the subject in your own words rather than naming a known work or character",
        True,
    ),
    FinishReason(
        "IMAGE_OTHER",
        "no image: the model stopped for an unspecified reason",
        "try again; if it repeats, rephrase the prompt",
        False,
    ),
    FinishReason(
        "NO_IMAGE",
        "the model answered with text only",
        "ask for an image explicitly (start with 'An image of …'); the model's text is shown",
        False,
    ),
)
FINISH_WORDS: frozenset[str] = frozenset(r.word for r in FINISH_REASONS)
_BY_WORD = {r.word: r for r in FINISH_REASONS}
_WORD_RE = re.compile(r"\b(" + "|".join(sorted(FINISH_WORDS, key=len, reverse=True)) + r")\b")


def find_reason(*texts: object) -> FinishReason | None:
    """The finish reason named in a failure's code or message (``None``: none of them)."""
    for text in texts:
        match = _WORD_RE.search(str(text or "").upper())
        if match:
            return _BY_WORD[match.group(1)]
    return None


def explain(reason: FinishReason, model_text: str | None = None) -> str:
    """One line: the outcome, the reason's word, the hint, and any text the model returned."""
    said = ""
    if model_text:
        text = " ".join(model_text.split())
        said = f'; the model said: "{text[:197] + "…" if len(text) > 200 else text}"'
    return f"{reason.outcome} ({reason.word}){said}; {reason.hint}"


def failure_text(code: object, message: object, model_text: str | None = None) -> str:
    """A failed task's reason as shown: the gateway's words, then the finish reason's outcome and hint, and the
    model's text, when it named one (``no reason given`` when it said nothing)."""
    words = str(message) if message else "no reason given"
    reason = find_reason(code, message)
    if reason is not None:
        return f"{words} — {explain(reason, model_text)}"
    return f'{words}; the model said: "{" ".join(model_text.split())}"' if model_text else words
