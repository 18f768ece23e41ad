"""Whom a keyless signature must name: sigstore's `--cert-identity` / `--cert-oidc-issuer`.

Kept apart from `sigstore_verify.py` so that pinning an identity (and verifying key-signed
bundles) does not load sigstore-python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cryptography import x509

from harness.errors import ConfigError

_ISSUER_V1_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_ISSUER_V2_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")


class IdentityMismatch(Exception):
    """A certificate does not name the pinned identity or issuer."""


def _compile(pattern: str | None, flag: str) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{flag} {pattern!r}: not a regular expression ({exc})") from exc


@dataclass(frozen=True)
class IdentityPin:
    """Whom a keyless signature must name (sigstore's `--cert-identity`/`--cert-oidc-issuer`).

    Regular expressions must match the whole value (`re.fullmatch`). Each of identity and issuer
    may be given exactly or as a regexp, not both.

    Raises:
        ConfigError: both forms of one field given, or a regexp does not compile.
    """

    identity: str | None = None
    identity_regexp: str | None = None
    issuer: str | None = None
    issuer_regexp: str | None = None
    _identity_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _issuer_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.identity is not None and self.identity_regexp is not None:
            raise ConfigError("give --cert-identity or --cert-identity-regexp, not both")
        if self.issuer is not None and self.issuer_regexp is not None:
            raise ConfigError("give --cert-oidc-issuer or --cert-oidc-issuer-regexp, not both")
        object.__setattr__(
            self, "_identity_re", _compile(self.identity_regexp, "--cert-identity-regexp")
        )
        object.__setattr__(
            self, "_issuer_re", _compile(self.issuer_regexp, "--cert-oidc-issuer-regexp")
        )

    @property
    def pinned(self) -> bool:
        return any(
            v is not None
            for v in (self.identity, self.identity_regexp, self.issuer, self.issuer_regexp)
        )

    def describe(self) -> str:
        who = self.identity or (f"/{self.identity_regexp}/" if self.identity_regexp else "any")
        issuer = self.issuer or (f"/{self.issuer_regexp}/" if self.issuer_regexp else "any")
        return f"{who} (issuer {issuer})"

    def check(self, identities: list[str], issuer: str) -> None:
        """Raise `IdentityMismatch` unless a certificate naming `identities` (SANs) and
        `issuer` matches this pin."""
        if self.identity is not None and self.identity not in identities:
            raise IdentityMismatch(f"identity {self.identity} is not in the certificate")
        if self._identity_re is not None and not any(
            self._identity_re.fullmatch(i) for i in identities
        ):
            raise IdentityMismatch(f"no certificate identity matches /{self.identity_regexp}/")
        if self.issuer is not None and issuer != self.issuer:
            raise IdentityMismatch(f"issuer {issuer!r} is not {self.issuer}")
        if self._issuer_re is not None and not self._issuer_re.fullmatch(issuer):
            raise IdentityMismatch(f"issuer {issuer!r} does not match /{self.issuer_regexp}/")


def _der_utf8(der: bytes) -> str:
    """The text of a DER UTF8String (tag 0x0C, short or long length)."""
    if len(der) < 2 or der[0] != 0x0C:
        return ""
    length, offset = der[1], 2
    if length & 0x80:
        count = length & 0x7F
        length, offset = int.from_bytes(der[2 : 2 + count], "big"), 2 + count
    return der[offset : offset + length].decode("utf-8", errors="replace")


def certificate_identity(cert: x509.Certificate) -> tuple[list[str], str]:
    """(SAN identities, OIDC issuer) of a Fulcio certificate ("" when it names no issuer)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [*san.get_values_for_type(x509.RFC822Name)]
        names += [*san.get_values_for_type(x509.UniformResourceIdentifier)]
    except x509.ExtensionNotFound:
        names = []
    issuer = ""
    for oid, decode in ((_ISSUER_V2_OID, _der_utf8), (_ISSUER_V1_OID, None)):
        try:
            raw = cert.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            continue
        value = raw.value if isinstance(raw, x509.UnrecognizedExtension) else b""
        issuer = decode(value) if decode else value.decode("utf-8", errors="replace")
        if issuer:
            break
    return names, issuer
