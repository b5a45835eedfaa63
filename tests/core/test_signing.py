import hashlib
import hmac

from needlecare.core.signing import check, new_webhook_secret, sign, sign_legacy, verify

NOW = 1_800_000_000


def test_signature_round_trip() -> None:
    secret = new_webhook_secret()
    body = b'{"a": 1}'
    header = sign(body, secret, timestamp=NOW)
    expected = hmac.new(secret.encode(), f"{NOW}.".encode() + body, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"
    assert verify(body, secret, header, now=NOW + 299)


def test_tampered_body_or_wrong_secret_or_malformed_header_fail() -> None:
    header = sign(b"body", "s1", timestamp=NOW)
    assert not verify(b"body!", "s1", header, now=NOW)
    assert not verify(b"body", "s2", header, now=NOW)
    assert not verify(b"body", "s1", None, now=NOW)
    assert not verify(b"body", "s1", header.replace(f"t={NOW}", f"t={NOW + 1}"), now=NOW), "t is signed"
    assert not verify(b"body", "s1", header.split(",")[1], now=NOW), "no timestamp"
    assert not verify(b"body", "s1", header + ",t=1", now=NOW), "two timestamps"
    assert not verify(b"body", "s1", header.upper(), now=NOW)
    assert not verify(b"body", "s1", "x" * 5000, now=NOW)


def test_a_timestamp_outside_the_tolerance_is_stale_either_way() -> None:
    header = sign(b"body", "s1", timestamp=NOW)
    assert check(b"body", ["s1"], header, now=NOW + 301, tolerance=300).outcome == "stale"
    assert check(b"body", ["s1"], header, now=NOW - 301, tolerance=300).outcome == "stale"
    assert check(b"body", ["s1"], header, now=NOW + 300, tolerance=300).valid


def test_any_active_secret_and_any_v1_matches() -> None:
    old, new = sign(b"body", "old", timestamp=NOW), sign(b"body", "new", timestamp=NOW)
    assert check(b"body", ["new", "old"], old, now=NOW).valid
    assert check(b"body", ["new", "old"], new, now=NOW).valid
    both = f"{new},v1={old.split('v1=')[1]}"
    assert check(b"body", ["old"], both, now=NOW).valid, "a sender may sign with both secrets"
    assert not check(b"body", ["other"], both, now=NOW).valid


def test_the_untimed_form_only_when_allowed() -> None:
    legacy = sign_legacy(b"body", "s1")
    assert legacy.startswith("sha256=") and len(legacy) == 7 + 64
    assert check(b"body", ["s1"], legacy, now=NOW).outcome == "legacy-refused"
    assert check(b"body", ["s1"], legacy, allow_legacy=True).valid
    assert not check(b"body!", ["s1"], legacy, allow_legacy=True).valid
    assert check(b"body", ["s1"], "sha256=zz", allow_legacy=True).outcome == "malformed"


def test_secrets_are_unique_and_long() -> None:
    secrets = {new_webhook_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(len(s) > 40 for s in secrets)
