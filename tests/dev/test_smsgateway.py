"""The local SMS gateway: what Apprise's json:// and form:// plugins post is recorded as one JSON file per message;
fault modes answer a chosen status or hang; replies are posted in the provider's webhook shapes."""

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import apprise
import pytest
from fastapi.testclient import TestClient

from needlecare.core import db as database
from needlecare.core.settings import Settings
from needlecare.dev.smsgateway import TOKEN_HEADER, SmsGateway, list_sms, post_inbound, sms_dir
from needlecare.web.app import create_app
from tests.conftest import free_port

TO = "+447700900123"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[SmsGateway]:
    running = SmsGateway(tmp_path / "sms").start(port=free_port())
    yield running
    running.stop()


def _apprise_send(url: str, body: str) -> bool:
    sender = apprise.Apprise()
    assert sender.add(url), url
    return bool(sender.notify(body=body, title=""))


def _post(url: str, payload: dict[str, Any], timeout: float = 5) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_apprise_json_with_the_recipient_in_the_payload_is_recorded(gateway: SmsGateway) -> None:
    assert _apprise_send(
        f"json://127.0.0.1:{gateway.port}/sms?:to={TO}", "Riverside Physio: hello. Reply STOP to stop."
    )
    [sms] = list_sms(gateway.directory)
    assert sms.to == TO and sms.text == "Riverside Physio: hello. Reply STOP to stop." and sms.path == "/sms"
    [file] = list(gateway.directory.glob("*.json"))
    assert file.stem == sms.id and file.stem.split("-")[0].isdigit() and len(file.stem.split("-")[0]) == 20
    assert not list(gateway.directory.glob(".*.tmp"))  # written atomically: no staging file left


def test_apprise_form_and_a_recipient_in_the_path(gateway: SmsGateway) -> None:
    assert _apprise_send(f"form://127.0.0.1:{gateway.port}/sms/{TO.lstrip('+')}", "form text")
    [sms] = list_sms(gateway.directory)
    assert sms.text == "form text" and sms.to == TO.lstrip("+")


def test_newest_first(gateway: SmsGateway) -> None:
    for n in range(3):
        assert _apprise_send(f"json://127.0.0.1:{gateway.port}/sms?:to={TO}", f"message {n}")
    assert [s.text for s in list_sms(gateway.directory)] == ["message 2", "message 1", "message 0"]


@pytest.mark.parametrize("status", [400, 500, 503])
def test_a_chosen_status_refuses_and_records_nothing(gateway: SmsGateway, status: int) -> None:
    code, _ = _post(f"http://127.0.0.1:{gateway.port}/_control", {"status": status})
    assert code == 200
    assert not _apprise_send(f"json://127.0.0.1:{gateway.port}/sms?:to={TO}", "refused")
    assert list_sms(gateway.directory) == []
    _post(f"http://127.0.0.1:{gateway.port}/_control", {"status": 200})
    assert _apprise_send(f"json://127.0.0.1:{gateway.port}/sms?:to={TO}", "accepted again")
    assert [s.text for s in list_sms(gateway.directory)] == ["accepted again"]


def test_hang_gives_no_answer_within_the_senders_timeout(gateway: SmsGateway) -> None:
    gateway.hang_seconds = 1.5
    with pytest.raises(TimeoutError):
        _post(f"http://127.0.0.1:{gateway.port}/sms", {"message": "held", "to": TO}, timeout=0.5)
    assert list_sms(gateway.directory) == []


def test_control_refuses_nonsense(gateway: SmsGateway) -> None:
    assert _post(f"http://127.0.0.1:{gateway.port}/_control", {"status": "soon"})[0] == 400
    assert _post(f"http://127.0.0.1:{gateway.port}/_control", {"hang_seconds": -1})[0] == 400
    assert gateway.status == 200 and gateway.hang_seconds == 0


class _Receiver:
    """A stand-in for a provider's customer endpoint: records each POST it receives."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                posts.append({"headers": dict(self.headers), "raw": raw, "query": self.path})
                data = json.dumps({"status": "received"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/sms/inbound"


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    running = _Receiver()
    yield running
    running.server.shutdown()
    running.server.server_close()


def test_post_inbound_json_and_form_shapes(receiver: _Receiver) -> None:
    result = post_inbound(receiver.url, "tok", TO, "7 0", to="+447700900000", message_id="m1")
    assert result.status == 200 and result.body == {"status": "received"}
    sent = receiver.posts[0]
    assert sent["headers"][TOKEN_HEADER] == "tok"
    assert json.loads(sent["raw"]) == {"id": "m1", "from": TO, "to": "+447700900000", "body": "7 0"}
    post_inbound(receiver.url, "tok", TO, "STOP", style="form", message_id="m2")
    form = {k: v[0] for k, v in parse_qs(receiver.posts[1]["raw"].decode()).items()}
    assert form == {"MessageSid": "m2", "From": TO, "Body": "STOP"}
    assert receiver.posts[1]["headers"]["Content-Type"] == "application/x-www-form-urlencoded"


def test_the_gateways_inbound_hook_forwards_a_reply(tmp_path: Path, receiver: _Receiver) -> None:
    gateway = SmsGateway(tmp_path / "sms", inbound_url=receiver.url, inbound_token="tok").start(port=free_port())
    try:
        code, body = _post(f"http://127.0.0.1:{gateway.port}/inbound", {"from": TO, "body": "HELP"})
        assert (code, body) == (200, {"status": "received"})
        sent = json.loads(receiver.posts[0]["raw"])
        assert (sent["from"], sent["body"]) == (TO, "HELP") and sent["id"].startswith("gw-")
        assert _post(f"http://127.0.0.1:{gateway.port}/inbound", {"body": "HELP"})[0] == 400
    finally:
        gateway.stop()


def test_the_outbox_page_lists_texts_beside_emails_newest_first(tmp_path: Path) -> None:
    """/outbox (development on loopback) shows what the gateway recorded, with a link to the survey it names."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    database.upgrade(url)
    settings = Settings(env="development", data_dir=tmp_path, database_url=url, rate_limits=False)
    running = SmsGateway(sms_dir(settings)).start(port=free_port())
    try:
        assert _apprise_send(f"{running.url}?:to={TO}", "Clinic: your check-in: http://127.0.0.1:8000/s/abc.def-1")
        assert _apprise_send(f"{running.url}?:to={TO}", "Clinic: text messages are on again.")
    finally:
        running.stop()
    with TestClient(create_app(settings)) as client:
        page = client.get("/outbox")
        listed = client.get("/outbox/sms.json").json()
    assert page.status_code == 200 and "Text messages" in page.text
    assert page.text.index("text messages are on again") < page.text.index("your check-in")  # newest first
    assert 'href="http://127.0.0.1:8000/s/abc.def-1"' in page.text and TO in page.text
    assert [m["text"] for m in listed] == [
        "Clinic: text messages are on again.",
        "Clinic: your check-in: http://127.0.0.1:8000/s/abc.def-1",
    ]
    database.get_engine(url).dispose()
