import logging

from needlecare.web.logfilter import RedactTokens, redact


def test_tokens_are_redacted_from_paths() -> None:
    assert redact("GET /s/abc.def HTTP/1.1") == "GET /s/[token] HTTP/1.1"
    assert redact("POST /api/v1/surveys/abc.def/answers") == "POST /api/v1/surveys/[token]/answers"
    assert redact("/u/12.deadbeef") == "/u/[token]"
    assert redact("GET /outbox.json") == "GET /outbox.json"
    assert redact("GET /static/style.css") == "GET /static/style.css"


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
