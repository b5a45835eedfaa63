"""The text of a check-in SMS (templates/sms/), and how many SMS segments a text takes.

A text is rendered from ``survey.txt.j2``; when that would take more than :data:`MAX_SEGMENTS` segments (a
long clinic name), from ``survey_short.txt.j2``; when even that would, it is not sent (:class:`TooLong`).
Segments: a text of GSM 03.38 characters only takes 160 characters in one segment and 153 per segment
when split (a character of the extension table, such as ``€`` or ``[``, counts twice); any other character
makes the whole text UCS-2: 70 in one segment, 67 per segment when split.
"""

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from needlecare.core.rendering import TEMPLATES_DIR

MAX_SEGMENTS = 3
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")


class TooLong(ValueError):
    """Even the short text takes more than MAX_SEGMENTS segments."""


def segments(text: str) -> int:
    """How many SMS segments ``text`` takes (see the module docstring)."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text):
        units = sum(2 if c in _GSM_EXTENDED else 1 for c in text)
        single, part = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part = 70, 67
    return 1 if units <= single else math.ceil(units / part)


@lru_cache(maxsize=2)
def _environment(root: Path) -> Environment:
    return Environment(
        loader=FileSystemLoader(str(root)),
        undefined=StrictUndefined,
        autoescape=False,  # plain text, never HTML
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _render(name: str, context: dict[str, Any], root: Path) -> str:
    raw = _environment(root).get_template(f"sms/{name}.txt.j2").render(context)
    return "\n".join(" ".join(line.split()) for line in raw.splitlines() if line.strip())


def survey_text(context: dict[str, Any], root: Path = TEMPLATES_DIR) -> str:
    """A check-in's text: clinic_name, step_title, survey_url, is_reminder, reply (the step takes a reply of
    numbers) and aftercare_by_email (where the warning signs were listed). Raises TooLong."""
    for name in ("survey", "survey_short"):
        text = _render(name, context, root)
        if segments(text) <= MAX_SEGMENTS:
            return text
    raise TooLong(f"the check-in text takes {segments(text)} SMS segments, more than {MAX_SEGMENTS}")
