"""ES256 JSON Web Tokens (RFC 7519 / RFC 7515 compact form): mint and verify, nothing else.

The lab's OIDC issuer is a P-256 key; the host mints identity tokens with it and the `fulcio`
role verifies them. Only `ES256` is accepted: a token naming any other `alg` (including
`none`) is refused before its signature is looked at. Standard library and `cryptography` 38.

Example:
    token = mint({"iss": ISSUER, "sub": "me@example.test", "aud": "sigstore",
                  "iat": now, "exp": now + 300}, issuer_key)
    claims = verify(token, issuer_key.public_key(), issuer=ISSUER, audience="sigstore")
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

ALGORITHM = "ES256"
_COORDINATE = 32  # bytes of r and of s for P-256


class JwtError(ValueError):
    """A token that is malformed, wrongly signed, or whose claims don't hold; says which."""


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url, as JWS uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url strictly.

    Raises:
        JwtError: characters outside the base64url alphabet, or a bad length.
    """
    if not text or any(c in text for c in "+/=") or len(text) % 4 == 1:
        raise JwtError("invalid base64url segment")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise JwtError("invalid base64url segment") from exc


def key_id(key: ec.EllipticCurvePublicKey) -> str:
    """A stable `kid` for a key: base64url of the first 16 bytes of SHA-256(SPKI DER)."""
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b64url_encode(hashlib.sha256(spki).digest()[:16])


def _check_p256(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> None:
    if not isinstance(key.curve, ec.SECP256R1):
        raise JwtError(f"ES256 needs a P-256 key, not {key.curve.name}")


def mint(
    claims: Mapping[str, Any],
    key: ec.EllipticCurvePrivateKey,
    *,
    kid: str | None = None,
) -> str:
    """Sign `claims` as a compact ES256 JWT.

    Args:
        claims: the JSON payload (the caller sets `iss`, `sub`, `aud`, `iat`, `exp`, ...).
        key: a P-256 private key.
        kid: the header's key id; defaults to `key_id(key.public_key())`.

    Raises:
        JwtError: the key is not P-256.

    Example:
        mint({"iss": "https://oidc.lab", "sub": "a@b.test", "aud": "sigstore",
              "iat": 1700000000, "exp": 1700000300}, key)
    """
    _check_p256(key)
    header = {"alg": ALGORITHM, "typ": "JWT", "kid": kid or key_id(key.public_key())}
    signing_input = (
        b64url_encode(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url_encode(json.dumps(dict(claims), separators=(",", ":")).encode())
    )
    der = key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(_COORDINATE, "big") + s.to_bytes(_COORDINATE, "big")
    return signing_input + "." + b64url_encode(raw)


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a compact JWS, without checking anything but its shape.

    Raises:
        JwtError: not three base64url segments of JSON objects.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtError("token is not a compact JWS (three dot-separated segments)")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JwtError("token header or payload is not JSON") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JwtError("token header and payload must be JSON objects")
    return header, claims


def _number(claims: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise JwtError(f"token has no {name!r} claim")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise JwtError(f"token claim {name!r} is not a number")
    return float(value)


def verify(
    token: str,
    key: ec.EllipticCurvePublicKey,
    *,
    issuer: str,
    audience: str,
    now: float | None = None,
    leeway: float = 60.0,
) -> dict[str, Any]:
    """Check an ES256 token's signature and its `iss`, `aud`, `exp`, `iat`, `nbf` and `sub`.

    `exp` must be in the future (no leeway: an expired token is refused); `iat` and `nbf`
    may be up to `leeway` seconds in the future, for clock skew between host and container.

    Args:
        token: the compact JWS.
        key: the issuer's P-256 public key.
        issuer: the only accepted `iss`.
        audience: a value `aud` must be or contain.
        now: the current UNIX time (default: `time.time()`).
        leeway: allowed clock skew for `iat`/`nbf`, in seconds.

    Returns:
        The claims.

    Raises:
        JwtError: with the first reason the token is refused.

    Example:
        claims = verify(token, issuer_pub, issuer="https://oidc.lab", audience="sigstore")
    """
    _check_p256(key)
    header, claims = decode_unverified(token)
    if header.get("alg") != ALGORITHM:
        raise JwtError(f"unsupported token algorithm {header.get('alg')!r} (want {ALGORITHM})")
    signing_input, _, signature_b64 = token.rpartition(".")
    raw = b64url_decode(signature_b64)
    if len(raw) != 2 * _COORDINATE:
        raise JwtError("ES256 signature must be 64 bytes")
    der = encode_dss_signature(
        int.from_bytes(raw[:_COORDINATE], "big"), int.from_bytes(raw[_COORDINATE:], "big")
    )
    try:
        key.verify(der, signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise JwtError("token signature does not verify with the issuer key") from exc

    if claims.get("iss") != issuer:
        raise JwtError(f"token issuer {claims.get('iss')!r} is not {issuer!r}")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if audience not in audiences:
        raise JwtError(f"token audience {aud!r} does not include {audience!r}")
    current = time.time() if now is None else now
    exp = _number(claims, "exp", required=True)
    assert exp is not None
    if current >= exp:
        raise JwtError(f"token expired {int(current - exp)} s ago")
    iat = _number(claims, "iat", required=True)
    assert iat is not None
    if iat > current + leeway:
        raise JwtError("token issued in the future (iat)")
    nbf = _number(claims, "nbf", required=False)
    if nbf is not None and nbf > current + leeway:
        raise JwtError("token not yet valid (nbf)")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise JwtError("token has no 'sub' claim")
    return claims
