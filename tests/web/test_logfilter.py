import io
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import uvicorn
from sqlmodel import Session

from models import Clinic
from needlecare.core.settings import Settings
from needlecare.followup.unsubscribe import make_unsubscribe_token
from needlecare.web import logfilter
from needlecare.web.app import create_app
from needlecare.web.logfilter import RedactTokens, redact
from tests.conftest import free_port
from tests.records import make_contact, make_session, token_for


def test_tokens_are_redacted_from_paths() -> None:
    assert redact("GET /s/abc.def HTTP/1.1") == "GET /s/[token] HTTP/1.1"
    assert redact("POST /api/v1/surveys/abc.def/answers") == "POST /api/v1/surveys/[token]/answers"
    assert redact("/u/12.deadbeef") == "/u/[token]"
    assert redact("GET /outbox.json") == "GET /outbox.json"
    assert redact("GET /static/style.css") == "GET /static/style.css"


def test_bare_tokens_are_redacted_too() -> None:
    survey = "eyJjIjoxLCJlIjoxNzk2MjM3NTM2fQ.JWgsFnkRXvodEc9KNtdv-lTnIj-z63CCQfxlnw9Y_UI"
    assert redact(f"link={survey} sent") == "link=[token] sent"
    assert redact(f"token '{make_unsubscribe_token(42, 'k' * 40)}'") == "token '[token]'"
    assert redact("version 1.2.3, 12.5 ms") == "version 1.2.3, 12.5 ms"


def test_the_filter_rewrites_uvicorn_access_records() -> None:
    # uvicorn.access logs '%s - "%s %s HTTP/%s" %d' with the path as an argument
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/s/secret.sig", "1.1", 200),
        None,
    )
    assert RedactTokens().filter(record)
    assert "secret" not in record.getMessage() and "/s/[token]" in record.getMessage()


def test_a_traceback_holding_a_link_is_logged_redacted_by_any_logger(caplog: pytest.LogCaptureFixture) -> None:
    logfilter.install()
    link = "http://needlecare.test/s/eyJjIjoxLCJlIjoxfQ.c2lnbmF0dXJlLW9mLXRoZS1saW5r"
    with caplog.at_level(logging.DEBUG):
        try:
            raise RuntimeError(f"could not fetch {link}")
        except RuntimeError:
            logging.getLogger("some.library").exception("request to %s failed", link)
    assert "eyJjIjoxLCJlIjoxfQ" not in caplog.text
    assert caplog.text.count("[token]") >= 2, "message and traceback are both there, redacted"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Everything any logger writes, formatted with tracebacks, at DEBUG."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    # The root logger, and every logger that does not pass its records up to it (Prefect's logging set-up,
    # once imported, gives uvicorn's loggers handlers of their own and stops them propagating).
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error", "httpx"):
        logging.getLogger(name)
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    levels = {logger: logger.level for logger in loggers}
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG):
            yield out
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
            logger.setLevel(levels[logger])
    out.write(caplog.text)


def test_failing_requests_with_a_survey_link_leave_no_token_in_any_log(
    settings: Settings, db: Session, clinic: Clinic, logs: io.StringIO
) -> None:
    session = make_session(db)
    expired = make_contact(db, session, "check_24h", opens=timedelta(hours=-30), closes=timedelta(minutes=-1))
    token = token_for(expired, settings)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    unsubscribe = make_unsubscribe_token(expired.patient_id, "not-the-key" * 4)
    port = free_port()
    # the real server, its access log on (log_config=None: its records go to the root logger's handlers)
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="debug", log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        with httpx.Client(base_url=base, timeout=10) as client:  # httpx logs every URL it requests at INFO
            statuses = [
                client.get(f"/s/{token}").status_code,
                client.post(f"/s/{token}", content=b"\xff\x00=", headers={"Content-Type": "text/plain"}).status_code,
                client.get(f"/s/{forged}").status_code,
                client.post(f"/api/v1/surveys/{token}/answers", content=b"{not json").status_code,
                client.get(f"/s/{token}?again=/s/{token}").status_code,
                client.post(f"/u/{unsubscribe}").status_code,
            ]
    finally:
        server.should_exit = True
        thread.join(timeout=15)
    assert all(400 <= s < 500 for s in statuses), statuses
    text = logs.getvalue()
    assert "uvicorn.access" in text and "httpx" in text, "the access log and a library's log were captured"
    for secret in (*token.split("."), *forged.split("."), unsubscribe.split(".")[1]):
        assert secret not in text
    assert text.count("[token]") >= len(statuses) * 2
