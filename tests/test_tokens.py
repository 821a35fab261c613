"""rtsp_resume.tokens: play tokens (EncryptToken) and signed reverse calls, as pure code."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsp_resume import tokens
from rtsp_resume.tokens import (
    InvalidSignature,
    InvalidToken,
    issue_play_token,
    load_or_create_secret,
    sign_request,
    verify_play_token,
    verify_request,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
NOW = 1_700_000_000.0


def make(**overrides: object) -> str:
    fields: dict = dict(user_id="alice", content_id="sample", login_session="ls-1", now=NOW)
    fields.update(overrides)
    return issue_play_token(KEY, **fields)


def test_round_trip_carries_every_field() -> None:
    token = make(start=12.5, ttl=60)
    grant = verify_play_token(KEY, token, NOW + 1)
    assert (grant.user_id, grant.content_id, grant.login_session) == ("alice", "sample", "ls-1")
    assert grant.start == 12.5
    assert grant.issued == NOW
    assert grant.expires == NOW + 60
    assert grant.token == token


def test_token_needs_no_escaping_in_a_url_query() -> None:
    token = make(user_id="ünïcode user", content_id="a b/c?d")
    assert urllib.parse.quote(token, safe="") == token
    assert "=" not in token and "+" not in token and "/" not in token


def test_every_token_is_different() -> None:
    assert make() != make()


def test_expired_token_refused_and_leeway_extends_it() -> None:
    token = make(ttl=60)
    verify_play_token(KEY, token, NOW + 60)
    with pytest.raises(InvalidToken) as info:
        verify_play_token(KEY, token, NOW + 61)
    assert info.value.reason == "expired"
    assert verify_play_token(KEY, token, NOW + 61, leeway=10).user_id == "alice"


def test_by_default_a_play_token_starts_sessions_for_minutes_not_hours() -> None:
    token = issue_play_token(KEY, user_id="alice", content_id="sample", login_session="s",
                             now=NOW)
    verify_play_token(KEY, token, NOW + 60)
    with pytest.raises(InvalidToken):
        verify_play_token(KEY, token, NOW + 15 * 60)


def test_token_from_another_key_refused() -> None:
    token = issue_play_token(OTHER_KEY, user_id="alice", content_id="sample",
                             login_session="ls-1", now=NOW)
    with pytest.raises(InvalidToken) as info:
        verify_play_token(KEY, token, NOW)
    assert info.value.reason == "bad signature"


def test_a_token_accepted_once_is_still_checked_against_the_key() -> None:
    # Checked tokens are remembered per key: accepting one under its own key must not
    # make it pass under another.
    token = issue_play_token(OTHER_KEY, user_id="alice", content_id="sample",
                             login_session="ls-1", now=NOW)
    assert verify_play_token(OTHER_KEY, token, NOW).user_id == "alice"
    with pytest.raises(InvalidToken) as info:
        verify_play_token(KEY, token, NOW)
    assert info.value.reason == "bad signature"


def test_edited_payload_refused() -> None:
    body, mac = make().split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["u"] = "mallory"
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken) as info:
        verify_play_token(KEY, f"{forged}.{mac}", NOW)
    assert info.value.reason == "bad signature"


@pytest.mark.parametrize("bad", ["", ".", "abc", "abc.", ".abc", "a.b.c", "a b.c", "é.é",
                                 "x" * 5000])
def test_malformed_tokens_refused(bad: str) -> None:
    with pytest.raises(InvalidToken) as info:
        verify_play_token(KEY, bad, NOW)
    assert info.value.reason in ("malformed", "bad signature")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_no_junk_token_is_accepted(junk: str) -> None:
    with pytest.raises(InvalidToken):
        verify_play_token(KEY, junk, NOW)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10_000))
def test_any_single_character_change_is_refused(seed: int) -> None:
    token = make()
    i = seed % len(token)
    replacement = "A" if token[i] != "A" else "B"
    with pytest.raises(InvalidToken):
        verify_play_token(KEY, token[:i] + replacement + token[i + 1:], NOW)


def test_bad_arguments_refused() -> None:
    with pytest.raises(ValueError):
        make(start=-1.0)
    with pytest.raises(ValueError):
        make(ttl=0)
    with pytest.raises(ValueError):
        issue_play_token(b"short", user_id="a", content_id="b", login_session="c", now=NOW)


BODY = b'{"ContentBM": 12.0}'


def test_signed_request_verifies_and_returns_nonce() -> None:
    headers = sign_request(KEY, BODY, NOW, nonce="retry-key-0001")
    assert headers[tokens.IDEMPOTENCY_HEADER] == "retry-key-0001"
    assert verify_request(KEY, BODY, headers, NOW + 5) == "retry-key-0001"


def test_header_names_are_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in sign_request(KEY, BODY, NOW).items()}
    verify_request(KEY, BODY, headers, NOW)


def test_fresh_nonce_by_default() -> None:
    a = sign_request(KEY, BODY, NOW)[tokens.NONCE_HEADER]
    b = sign_request(KEY, BODY, NOW)[tokens.NONCE_HEADER]
    assert a != b


@pytest.mark.parametrize("missing", [tokens.TIMESTAMP_HEADER, tokens.NONCE_HEADER,
                                     tokens.SIGNATURE_HEADER])
def test_missing_header_refused(missing: str) -> None:
    headers = sign_request(KEY, BODY, NOW)
    del headers[missing]
    with pytest.raises(InvalidSignature) as info:
        verify_request(KEY, BODY, headers, NOW)
    assert info.value.reason == "missing"


def test_changed_body_refused() -> None:
    headers = sign_request(KEY, BODY, NOW)
    with pytest.raises(InvalidSignature) as info:
        verify_request(KEY, BODY.replace(b"12", b"13"), headers, NOW)
    assert info.value.reason == "bad signature"


def test_changed_nonce_or_timestamp_refused() -> None:
    headers = sign_request(KEY, BODY, NOW, nonce="nonce-aaaa")
    for name, value in ((tokens.NONCE_HEADER, "nonce-bbbb"), (tokens.TIMESTAMP_HEADER,
                                                              str(int(NOW) + 1))):
        changed = dict(headers, **{name: value})
        changed.pop(tokens.IDEMPOTENCY_HEADER)
        with pytest.raises(InvalidSignature) as info:
            verify_request(KEY, BODY, changed, NOW)
        assert info.value.reason == "bad signature"


def test_other_key_refused() -> None:
    with pytest.raises(InvalidSignature) as info:
        verify_request(KEY, BODY, sign_request(OTHER_KEY, BODY, NOW), NOW)
    assert info.value.reason == "bad signature"


def test_stale_and_future_timestamps_refused() -> None:
    headers = sign_request(KEY, BODY, NOW)
    verify_request(KEY, BODY, headers, NOW + 300)
    for now in (NOW + 301, NOW - 301):
        with pytest.raises(InvalidSignature) as info:
            verify_request(KEY, BODY, headers, now)
        assert info.value.reason == "stale"


def test_idempotency_key_must_equal_nonce() -> None:
    headers = sign_request(KEY, BODY, NOW)
    headers[tokens.IDEMPOTENCY_HEADER] = "something-else"
    with pytest.raises(InvalidSignature) as info:
        verify_request(KEY, BODY, headers, NOW)
    assert info.value.reason == "malformed"


@pytest.mark.parametrize("field,value", [(tokens.TIMESTAMP_HEADER, "12.5"),
                                         (tokens.TIMESTAMP_HEADER, "-5"),
                                         (tokens.TIMESTAMP_HEADER, "١٢٣"),
                                         (tokens.NONCE_HEADER, "short"),
                                         (tokens.NONCE_HEADER, "has space in it")])
def test_malformed_headers_refused(field: str, value: str) -> None:
    headers = sign_request(KEY, BODY, NOW)
    headers[field] = value
    headers.pop(tokens.IDEMPOTENCY_HEADER)
    with pytest.raises(InvalidSignature) as info:
        verify_request(KEY, BODY, headers, NOW)
    assert info.value.reason == "malformed"


def test_play_token_mac_is_not_a_request_signature() -> None:
    # Domain separation: the two uses of the key must not stand in for each other.
    token = make()
    body, mac = token.split(".")
    headers = sign_request(KEY, body.encode(), NOW)
    assert mac not in headers[tokens.SIGNATURE_HEADER]


def test_secret_created_once_with_mode_0600(tmp_path) -> None:
    path = tmp_path / "sub" / "secret"
    key = load_or_create_secret(path)
    assert len(key) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secret(path) == key
    assert not [p for p in path.parent.iterdir() if p.name != "secret"]


def test_concurrent_creation_agrees_on_one_key(tmp_path) -> None:
    path = tmp_path / "secret"
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_or_create_secret(path)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1


def test_bad_secret_file_refused(tmp_path) -> None:
    path = tmp_path / "secret"
    path.write_text("not hex\n")
    with pytest.raises(ValueError):
        load_or_create_secret(path)
    path.write_text("abcd\n")
    with pytest.raises(ValueError):
        load_or_create_secret(path)
