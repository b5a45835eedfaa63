"""Security headers on every response: a CSP without 'unsafe-inline' whose nonce is the one on each page's
<style>, nosniff, no framing of any page (patient pages included), HSTS behind https, no API docs in production."""

import base64
import hashlib
import io
import re
from collections.abc import Iterator

import matplotlib

matplotlib.use("Agg")
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from matplotlib.figure import Figure
from pydantic import SecretStr
from sqlmodel import Session

from models import Clinic
from needlecare.core.settings import Settings
from needlecare.followup.unsubscribe import make_unsubscribe_token
from needlecare.staff import auth
from needlecare.web import headers
from needlecare.web.app import create_app
from tests.records import make_contact, make_session, token_for

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
STYLE_TAG = re.compile(r"<style\b([^>]*)>")


@pytest.fixture
def client(settings: Settings, clinic: Clinic, db: Session) -> Iterator[TestClient]:
    auth.create_user(db, clinic.id, "dana@riverside.example", "Dana Reyes", PASSWORD)
    with TestClient(create_app(settings), raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


def _policy(response: Response) -> dict[str, str]:
    csp = response.headers["content-security-policy"]
    parts = (p.strip().partition(" ") for p in csp.split(";") if p.strip())
    return {name: sources for name, _, sources in parts}


def assert_hardened(response: Response, *, html: bool = True) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    policy = _policy(response)
    assert policy["frame-ancestors"] == "'none'" and policy["default-src"] == "'none'"
    assert "'unsafe-inline'" not in policy.get("style-src", "") and "script-src" not in policy
    if html:
        nonce = re.search(r"'nonce-([^']+)'", policy["style-src"])
        assert nonce, policy
        tags = STYLE_TAG.findall(response.text)
        assert tags, "the page has its styles"
        assert all(f'nonce="{nonce.group(1)}"' in attrs for attrs in tags), tags
        assert not re.search(r"<script\b|\sstyle=\"|\son[a-z]+=", response.text), "nothing inline a strict CSP blocks"


def _login(client: TestClient) -> None:
    page = client.get("/login")
    token = CSRF.search(page.text)
    assert token, page.text
    data = {"email": "dana@riverside.example", "password": PASSWORD, "csrf": token.group(1), "next": "/cases"}
    assert client.post("/login", data=data).status_code == 303


def test_patient_pages_are_hardened_and_cannot_be_framed(client: TestClient, db: Session, settings: Settings) -> None:
    contact = make_contact(db, make_session(db), "check_24h")
    survey = client.get(f"/s/{token_for(contact, settings)}")
    assert survey.status_code == 200
    assert_hardened(survey)
    assert_hardened(client.get("/s/not-a-token"))
    unsubscribe = client.get(f"/u/{make_unsubscribe_token(contact.patient_id, settings.secret_key.get_secret_value())}")
    assert unsubscribe.status_code == 200
    assert_hardened(unsubscribe)


def test_two_responses_never_share_a_nonce(client: TestClient) -> None:
    first, second = _policy(client.get("/"))["style-src"], _policy(client.get("/"))["style-src"]
    assert first != second


def test_staff_pages_get_the_full_policy_not_only_frame_ancestors(client: TestClient) -> None:
    assert_hardened(client.get("/login"))
    _login(client)
    cases = client.get("/cases")
    assert cases.status_code == 200 and cases.headers["cache-control"] == "no-store"
    assert_hardened(cases)
    assert_hardened(client.get("/"))


def test_json_and_error_responses_carry_the_headers_too(client: TestClient) -> None:
    for response in (
        client.get("/healthz"),
        client.post("/api/v1/events/session-completed", content=b"{}"),
        client.get("/no/such/page"),
    ):
        assert_hardened(response, html=False)


def test_the_dashboard_allows_its_chart_styles_and_nothing_else(client: TestClient) -> None:
    _login(client)
    page = client.get("/dashboard")
    assert page.status_code in (200, 202), page.status_code
    policy = _policy(page)
    assert policy["style-src-attr"] == "'unsafe-inline'", "matplotlib SVG charts are styled by attributes"
    # the one <style> element matplotlib writes into a chart is allowed by its hash, and only it
    buffer = io.StringIO()
    Figure().savefig(buffer, format="svg")
    [chart_style] = re.findall(r"<style[^>]*>(.*?)</style>", buffer.getvalue(), re.S)
    digest = base64.b64encode(hashlib.sha256(chart_style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy["style-src"]
    assert "'unsafe-inline'" not in policy["style-src"]


def test_hsts_only_when_the_public_url_is_https(settings: Settings, clinic: Clinic) -> None:
    with TestClient(create_app(settings)) as plain:
        assert "strict-transport-security" not in plain.get("/healthz").headers
    https = settings.model_copy(update={"public_base_url": "https://care.clinic.example"})
    with TestClient(create_app(https)) as secure:
        assert secure.get("/healthz").headers["strict-transport-security"] == headers.HSTS


def test_api_docs_are_off_in_production(settings: Settings, clinic: Clinic) -> None:
    with TestClient(create_app(settings)) as test:
        assert test.get("/docs").status_code == 200 and test.get("/redoc").status_code == 200
    production = Settings(
        env="production",
        secret_key=SecretStr("k" * 40),
        patient_email_url="mailtos://u:p@smtp.example.org",
        data_dir=settings.data_dir,
        database_url=settings.database_url,
    )
    with TestClient(create_app(production)) as prod:
        assert prod.get("/docs").status_code == 404 and prod.get("/redoc").status_code == 404
        assert 'href="/docs"' not in prod.get("/").text, "no link to a page that is not there"


def test_a_real_browser_applies_every_style_under_the_policy(
    settings: Settings, db: Session, clinic: Clinic, client: TestClient
) -> None:
    """Chromium reports no CSP violation on the patient, login and staff pages, and the styles do apply."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import free_port
    from tests.e2e.browser import launch_chromium, serve_app

    contact = make_contact(db, make_session(db), "check_24h")
    port = free_port()
    served = settings.model_copy(update={"public_base_url": f"http://127.0.0.1:{port}"})
    with serve_app(served, port) as base, sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            page.add_init_script(
                "window.__violations = [];"
                "document.addEventListener('securitypolicyviolation', e => "
                "window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
            )
            page.goto(f"{base}/s/{token_for(contact, settings)}")
            button = page.locator("button[type=submit]").first
            assert button.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(11, 92, 173)"
            assert page.evaluate("window.__violations") == []
            for path in ("/login", "/s/not-a-token", "/"):
                page.goto(base + path)
                assert page.evaluate("window.__violations") == [], path
            page.goto(f"{base}/login")
            page.fill("input[name=email]", "dana@riverside.example")
            page.fill("input[name=password]", PASSWORD)
            page.locator("button[type=submit]").click()
            page.wait_for_url(f"{base}/cases")
            assert page.evaluate("window.__violations") == []
            bar = page.locator(".staffbar")
            assert bar.evaluate("e => getComputedStyle(e).display") == "flex", "the staff styles apply"
            page.goto(f"{base}/dashboard")
            assert page.evaluate("window.__violations") == []
        finally:
            browser.close()


def _outward_address() -> str | None:
    """This machine's address on a non-loopback interface, if it has one (no packet is sent)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address: str = s.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.mark.parametrize("key", ["development", "own"])
def test_a_development_server_started_on_a_network_interface_fails_closed(
    settings: Settings, clinic: Clinic, key: str
) -> None:
    """uvicorn started with --host 0.0.0.0 while the settings say loopback: off loopback, the development key
    serves nothing (503) and /outbox does not exist (404); on loopback both still work, as `make run` needs."""
    import threading
    import time

    import httpx
    import uvicorn

    from tests.conftest import free_port

    outward = _outward_address()
    if outward is None:
        pytest.skip("this machine has no non-loopback interface")
    development = Settings(env="development", data_dir=settings.data_dir, database_url=settings.database_url)
    if key == "own":
        development = development.model_copy(update={"secret_key": SecretStr("k" * 40)})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(development), host="0.0.0.0", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        local, remote = f"http://127.0.0.1:{port}", f"http://{outward}:{port}"
        assert httpx.get(f"{local}/healthz").status_code == 200
        assert httpx.get(f"{local}/outbox.json").status_code == 200
        if key == "development":
            refused = httpx.get(f"{remote}/healthz")
            assert refused.status_code == 503 and "NEEDLECARE_SECRET_KEY" in refused.text
            assert refused.headers["x-content-type-options"] == "nosniff"
        else:
            assert httpx.get(f"{remote}/healthz").status_code == 200
        assert httpx.get(f"{remote}/outbox.json").status_code == (503 if key == "development" else 404)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
