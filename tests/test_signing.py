"""Signing reproduces Kraken's published worked examples exactly."""

from __future__ import annotations

import json

import pytest

from recorder.protocol.errors import SigningError
from recorder.protocol.signing import futures_challenge_sign, spot_api_sign, spot_sign_headers

SPOT_SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
SPOT_BODY = "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
SPOT_SIGN = "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
FUTURES_SECRET = "7zxMEF5p/Z8l2p2U7Ghv6x14Af+Fx+92tPgUdVQ748FOIrEoT9bgT+bTRfXc5pz8na+hL/QdrCVG7bh9KpT0eMTm"
FUTURES_CHALLENGE = "c100b894-1729-464d-ace1-52dbce11db42"
FUTURES_SIGNED = "4JEpF3ix66GA2B+ooK128Ift4XQVtc137N9yeg4Kqsn9PI0Kpzbysl9M1IeCEdjg0zl00wkVqcsnG4bmnlMb3A=="


@pytest.mark.parametrize("nonce", [1616492376594, "1616492376594"])
@pytest.mark.parametrize("body", [SPOT_BODY, SPOT_BODY.encode()])
def test_spot_documented_example(nonce: int | str, body: str | bytes) -> None:
    assert spot_api_sign(SPOT_SECRET, "/0/private/AddOrder", nonce, body) == SPOT_SIGN


def test_spot_vector_file(fixture_file) -> None:
    vector = json.loads(fixture_file("checksum_vectors/api_sign_vector.json").read_text())
    got = spot_api_sign(
        vector["api_secret_base64"], vector["uri_path"], vector["nonce"], vector["postdata"]
    )
    assert got == vector["expected_api_sign"]


def test_spot_signature_depends_on_every_input() -> None:
    base = spot_api_sign(SPOT_SECRET, "/0/private/AddOrder", 1616492376594, SPOT_BODY)
    assert spot_api_sign(SPOT_SECRET, "/0/private/AddOrders", 1616492376594, SPOT_BODY) != base
    assert spot_api_sign(SPOT_SECRET, "/0/private/AddOrder", 1616492376595, SPOT_BODY) != base
    assert spot_api_sign(SPOT_SECRET, "/0/private/AddOrder", 1616492376594, SPOT_BODY + " ") != base


def test_headers() -> None:
    headers = spot_sign_headers("key", SPOT_SECRET, "/0/private/AddOrder", 1616492376594, SPOT_BODY)
    assert headers == {"API-Key": "key", "API-Sign": SPOT_SIGN}


def test_futures_documented_example() -> None:
    assert futures_challenge_sign(FUTURES_SECRET, FUTURES_CHALLENGE) == FUTURES_SIGNED


@pytest.mark.parametrize("secret", ["not base64!", "abc", "", "  ", "a===b"])
def test_bad_secret_raises_signing_error(secret: str) -> None:
    with pytest.raises(SigningError):
        spot_api_sign(secret, "/0/private/Balance", 1, "nonce=1")
    with pytest.raises(SigningError):
        futures_challenge_sign(secret, FUTURES_CHALLENGE)


@pytest.mark.parametrize("nonce", [-1, "12a", "", True, 1.5, 2**64])
def test_bad_nonce_raises_signing_error(nonce: object) -> None:
    with pytest.raises(SigningError):
        spot_api_sign(SPOT_SECRET, "/0/private/Balance", nonce, "")  # type: ignore[arg-type]


def test_bad_challenge_and_path_raise() -> None:
    with pytest.raises(SigningError):
        futures_challenge_sign(FUTURES_SECRET, "")
    with pytest.raises(SigningError):
        spot_api_sign(SPOT_SECRET, "0/private/Balance", 1, "")
    with pytest.raises(SigningError):
        spot_sign_headers("", SPOT_SECRET, "/0/private/Balance", 1, "")
