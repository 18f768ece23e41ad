"""ES256 JWT mint/verify, cross-checked with PyJWT (what sigstore-python decodes tokens with)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from lab.services.sigstack import jwt

ISSUER = "https://oidc.lab.test"


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "dev@lab.test",
        "aud": "sigstore",
        "iat": now,
        "exp": now + 300,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _verify(token: str, key: ec.EllipticCurvePrivateKey, **kw: Any) -> dict[str, Any]:
    return jwt.verify(token, key.public_key(), issuer=ISSUER, audience="sigstore", **kw)


def test_round_trip(key: ec.EllipticCurvePrivateKey) -> None:
    token = jwt.mint(_claims(), key)
    header, _ = jwt.decode_unverified(token)
    assert header == {"alg": "ES256", "typ": "JWT", "kid": jwt.key_id(key.public_key())}
    assert _verify(token, key)["sub"] == "dev@lab.test"


def test_pyjwt_reads_our_tokens_and_we_read_pyjwt_tokens(key: ec.EllipticCurvePrivateKey) -> None:
    ours = jwt.mint(_claims(), key)
    decoded = pyjwt.decode(ours, key.public_key(), algorithms=["ES256"], audience="sigstore")
    assert decoded["iss"] == ISSUER
    theirs = pyjwt.encode(_claims(), key, algorithm="ES256")
    assert _verify(theirs, key)["aud"] == "sigstore"


def test_audience_list_is_accepted(key: ec.EllipticCurvePrivateKey) -> None:
    assert _verify(jwt.mint(_claims(aud=["other", "sigstore"]), key), key)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (lambda now: {"exp": now - 1}, "expired"),
        (lambda now: {"aud": "not-sigstore"}, "audience"),
        (lambda now: {"iss": "https://evil.test"}, "issuer"),
        (lambda now: {"iat": now + 3600}, "iat"),
        (lambda now: {"nbf": now + 3600}, "nbf"),
        (lambda now: {"sub": None}, "sub"),
        (lambda now: {"exp": None}, "'exp'"),
        (lambda now: {"exp": "soon"}, "not a number"),
    ],
    ids=["exp", "aud", "iss", "iat", "nbf", "sub", "no-exp", "exp-text"],
)
def test_bad_claims_are_refused(
    key: ec.EllipticCurvePrivateKey, overrides: Callable[[int], dict[str, Any]], reason: str
) -> None:
    # The claims are made when the test runs, not when it is collected: a long suite must not
    # turn "issued in the future" into "expired".
    claims = _claims(**overrides(int(time.time())))
    with pytest.raises(jwt.JwtError, match=reason):
        _verify(jwt.mint(claims, key), key)


def test_small_clock_skew_is_tolerated(key: ec.EllipticCurvePrivateKey) -> None:
    token = jwt.mint(_claims(iat=int(time.time()) + 30), key)
    assert _verify(token, key, leeway=60)
    with pytest.raises(jwt.JwtError, match="iat"):
        _verify(token, key, leeway=5)


def test_wrong_key_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(jwt.JwtError, match="signature"):
        _verify(jwt.mint(_claims(), other), key)


def test_tampered_payload_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    header, _, signature = jwt.mint(_claims(), key).split(".")
    forged = jwt.b64url_encode(json.dumps(_claims(sub="admin@lab.test")).encode())
    with pytest.raises(jwt.JwtError, match="signature"):
        _verify(f"{header}.{forged}.{signature}", key)


@pytest.mark.parametrize("alg", ["none", "HS256", "RS256"])
def test_other_algorithms_are_refused(key: ec.EllipticCurvePrivateKey, alg: str) -> None:
    _, payload, signature = jwt.mint(_claims(), key).split(".")
    header = jwt.b64url_encode(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    with pytest.raises(jwt.JwtError, match="algorithm"):
        _verify(f"{header}.{payload}.{signature}", key)


@pytest.mark.parametrize(
    "token", ["", "a.b", "a.b.c.d", "!!.e30.e30", "e30.e30.", "WzFd.e30.AAAA", "e30.bm90anNvbg.AA"]
)
def test_malformed_tokens_are_refused(key: ec.EllipticCurvePrivateKey, token: str) -> None:
    with pytest.raises(jwt.JwtError):
        _verify(token, key)


def test_only_p256_keys(key: ec.EllipticCurvePrivateKey) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(jwt.JwtError, match="P-256"):
        jwt.mint(_claims(), p384)
    with pytest.raises(jwt.JwtError, match="P-256"):
        jwt.verify(jwt.mint(_claims(), key), p384.public_key(), issuer=ISSUER, audience="sigstore")
