from needlecare.core.signing import new_webhook_secret, sign, verify


def test_signature_round_trip() -> None:
    secret = new_webhook_secret()
    body = b'{"a": 1}'
    header = sign(body, secret)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify(body, secret, header)


def test_tampered_body_or_wrong_secret_or_malformed_header_fail() -> None:
    header = sign(b"body", "s1")
    assert not verify(b"body!", "s1", header)
    assert not verify(b"body", "s2", header)
    assert not verify(b"body", "s1", None)
    assert not verify(b"body", "s1", header.removeprefix("sha256="))
    assert not verify(b"body", "s1", "sha1=" + header[7:])


def test_secrets_are_unique_and_long() -> None:
    secrets = {new_webhook_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(len(s) > 40 for s in secrets)
