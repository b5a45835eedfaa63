"""Reading a JSON request body safely: one place that turns every malformed body into a clear error.

Refused, each with a message that says what is wrong: bytes that are not UTF-8, text that is not JSON,
nesting deeper than ``max_depth`` (checked before parsing, so a deeply nested body cannot exhaust the
parser's recursion), ``NaN`` / ``Infinity``, numbers beyond :data:`MAX_INTEGER` or too large for a float (``1e400``),
number literals longer than :data:`MAX_NUMBER_CHARS`, and strings holding a NUL or a lone surrogate (which no
database column stores). Sizes are limited by the caller before the body is read.
"""

import json
import math
from typing import Any

MAX_DEPTH = 32
MAX_INTEGER = 2**53 - 1
"""The largest integer accepted (either sign): the interoperable range of RFC 7493 (I-JSON) §2.2."""
MAX_NUMBER_CHARS = 40


class JsonInputError(ValueError):
    """The body cannot be used; the message is safe to show to the sender (it quotes no body content)."""


def _depth(raw: bytes) -> int:
    deepest = depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise JsonInputError(f"{name} is not a number JSON allows")


def _parse_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_NUMBER_CHARS:
        raise JsonInputError(f"a number has more than {MAX_NUMBER_CHARS} digits")
    value = int(literal)
    if abs(value) > MAX_INTEGER:
        raise JsonInputError(f"a whole number is beyond ±{MAX_INTEGER} (2^53 - 1)")
    return value


def _parse_float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise JsonInputError(f"a number is written with more than {MAX_NUMBER_CHARS} characters")
    value = float(literal)
    if not math.isfinite(value):
        raise JsonInputError("a number is too large for a floating-point value")
    return value


def _check_strings(value: Any, path: str = "body") -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise JsonInputError(f"{path}: text contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise JsonInputError(f"{path}: text contains an unpaired surrogate (\\ud800-\\udfff)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key, path)
            _check_strings(item, f"{path}.{key[:40]}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_strings(item, f"{path}[{index}]")


def load_json(raw: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``raw`` or raise :class:`JsonInputError` saying why it cannot be used."""
    if _depth(raw) > max_depth:
        raise JsonInputError(f"body is nested more than {max_depth} levels deep")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonInputError(f"body is not UTF-8 (byte {exc.start})") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_int=_parse_int, parse_float=_parse_float)
    except JsonInputError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonInputError(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise JsonInputError(f"body is nested more than {max_depth} levels deep") from None
    _check_strings(data)
    return data
