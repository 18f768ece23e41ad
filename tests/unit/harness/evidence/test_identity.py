from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.evidence.identity import IdentityMismatch, IdentityPin

SANS = ["lab@cihub.test"]
ISSUER = "https://oidc.lab.cihub"


@pytest.mark.parametrize(
    "pin",
    [
        IdentityPin(),
        IdentityPin(identity="lab@cihub.test"),
        IdentityPin(issuer=ISSUER),
        IdentityPin(identity_regexp=r"lab@cihub\.test", issuer_regexp=r"https://oidc\..*"),
    ],
)
def test_matching_pins(pin: IdentityPin) -> None:
    pin.check(SANS, ISSUER)


@pytest.mark.parametrize(
    "pin",
    [
        IdentityPin(identity="ops@cihub.test"),
        IdentityPin(issuer="https://other"),
        IdentityPin(identity_regexp=r"lab@cihub"),  # must match the whole value
        IdentityPin(identity_regexp=r".*@corp\.example"),
        IdentityPin(issuer_regexp=r"https://oidc"),
    ],
)
def test_mismatching_pins(pin: IdentityPin) -> None:
    with pytest.raises(IdentityMismatch):
        pin.check(SANS, ISSUER)


def test_bad_pins_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="not both"):
        IdentityPin(identity="a", identity_regexp="a")
    with pytest.raises(ConfigError, match="not both"):
        IdentityPin(issuer="a", issuer_regexp="a")
    with pytest.raises(ConfigError, match="not a regular expression"):
        IdentityPin(issuer_regexp="(")
    assert not IdentityPin().pinned and IdentityPin(issuer="x").pinned
