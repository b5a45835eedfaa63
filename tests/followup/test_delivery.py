"""Delivery through Apprise to real SMTP servers (aiosmtpd): plain and STARTTLS."""

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from needlecare.core.rendering import RenderedEmail
from needlecare.dev.mailcapture import _Handler, list_mail
from needlecare.followup.delivery import Attachment, TransientDeliveryError, email_url, send_email
from tests.conftest import free_port

EMAIL = RenderedEmail("Hello", "Text part with https://example.org/link", "<p>HTML <a href='https://x'>x</a></p>")


@pytest.fixture
def tls_sink(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    port = free_port()
    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()
    controller = Controller(
        _Handler(mail_dir), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
    )
    controller.start()
    yield port, mail_dir
    controller.stop()


def test_starttls_delivery_uses_a_working_tls_context(tls_sink: tuple[int, Path]) -> None:
    port, mail_dir = tls_sink
    base = f"mailto://127.0.0.1:{port}?mode=starttls&verify=no&from=care@clinic.example"
    for _ in range(2):  # the second send reuses the shared context
        send_email(
            base,
            "pat@example.org",
            EMAIL,
            {"X-Needlecare-Notification": "7"},
            [Attachment("a.ics", "text/calendar", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")],
        )
    mails = list_mail(mail_dir)
    assert len(mails) == 2
    assert mails[0].text.strip() == EMAIL.text, "our own text part, link intact"
    assert mails[0].attachments == ["a.ics"] and mails[0].headers["X-Needlecare-Notification"] == "7"


def test_verifying_tls_against_a_self_signed_server_fails_as_transient(tls_sink: tuple[int, Path]) -> None:
    port, mail_dir = tls_sink
    base = f"mailto://127.0.0.1:{port}?mode=starttls&from=care@clinic.example"
    with pytest.raises(TransientDeliveryError) as info:
        send_email(base, "pat@example.org", EMAIL)
    assert "pat@example.org" not in str(info.value), "no address in the error"
    assert list_mail(mail_dir) == []


def test_headers_are_carried_in_the_url_and_quoted() -> None:
    url = email_url("mailto://h:25?mode=insecure", "a+b@example.org", {"List-Unsubscribe": "<https://x/u/1.ab>"})
    assert "to=a%2Bb@example.org" in url or "to=a+b@example.org" in url
    assert "&+List-Unsubscribe=%3Chttps%3A%2F%2Fx%2Fu%2F1.ab%3E" in url
