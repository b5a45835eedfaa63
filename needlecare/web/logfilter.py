"""Keep usable links out of every log: survey and unsubscribe tokens, and the SMS webhook's ``?token=``, are
redacted before any handler sees them.

:func:`install` does it twice over, so that no route into a log file is missed:

- a log-record factory: every record made in the process, by any logger (uvicorn's error log, Starlette,
  httpx, this application) and for any handler added now or later, has its message, arguments, traceback text
  and stack text redacted as it is made;
- a :class:`RedactTokens` filter on the root, ``uvicorn``, ``uvicorn.error``, ``uvicorn.access`` and
  ``needlecare`` loggers and on each of their handlers, for records built without the factory.

A traceback whose text held a token is kept only as redacted text (``exc_text``); its exception object is
dropped from the record so that no formatter can render the original again.
"""

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

_TOKEN_PATH = re.compile(r"(/(?:s|u|api/v1/surveys)/)[^/\s\"'<>?#]+")
# Tokens outside a path: a survey token (base64url JSON payload "{..." -> "eyJ", a dot, its MAC) and an
# unsubscribe token (patient id, a dot, 32 hex digits).
_SURVEY_TOKEN = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")
_UNSUBSCRIBE_TOKEN = re.compile(r"\b\d{1,12}\.[0-9a-f]{32}\b")
_QUERY_TOKEN = re.compile(r"([?&]token=)[^&\s\"'<>#]+")  # the SMS provider's webhook token (/api/v1/sms/inbound)
REDACTED = "[token]"
LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "needlecare")

_lock = threading.Lock()


def redact(text: str) -> str:
    text = _TOKEN_PATH.sub(r"\1" + REDACTED, text)
    text = _SURVEY_TOKEN.sub(REDACTED, text)
    text = _QUERY_TOKEN.sub(r"\1" + REDACTED, text)
    return _UNSUBSCRIBE_TOKEN.sub(REDACTED, text)


def _redact_arg(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, (int, float)):
        return value  # keeps %d and %f working
    try:
        text = str(value)
    except Exception:
        return value
    cleaned = redact(text)
    return value if cleaned == text else cleaned


def redact_record(record: logging.LogRecord) -> None:
    """Redact ``record`` in place (idempotent)."""
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    elif record.msg is not None:
        record.msg = _redact_arg(record.msg)
    if isinstance(record.args, dict):
        record.args = {k: _redact_arg(v) for k, v in record.args.items()}
    elif record.args:
        record.args = tuple(_redact_arg(a) for a in record.args)
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        text = logging.Formatter().formatException(record.exc_info)
        cleaned = redact(text)
        if cleaned != text:
            record.exc_text, record.exc_info = cleaned, None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def _wrap(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        redact_record(record)
        return record

    make.needlecare_redacts = True  # type: ignore[attr-defined]
    return make


def _add_filter(target: logging.Filterer) -> None:
    if not any(isinstance(f, RedactTokens) for f in target.filters):
        target.addFilter(RedactTokens())


def install() -> None:
    """Redact tokens from every record of this process (idempotent; see the module's docstring)."""
    with _lock:
        current = logging.getLogRecordFactory()
        if not getattr(current, "needlecare_redacts", False):
            logging.setLogRecordFactory(_wrap(current))
        for name in LOGGERS:
            logger = logging.getLogger(name)
            _add_filter(logger)
            for handler in logger.handlers:
                _add_filter(handler)
