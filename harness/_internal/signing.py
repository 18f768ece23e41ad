"""How drills sign their evidence: keyless through a lab (the default) or with a local key.

`--sign keyless` (default) signs through the Sigstore stack of the caller's running lab, or of a
lab brought up for the run; `--sign key:PATH` signs with a local PEM private key (air-gapped use)
and is named as such by verify.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import ConfigError

if TYPE_CHECKING:  # the evidence package loads only when a signer is made (`cihub lab`: never)
    from harness.evidence import Signer

_logger = logging.getLogger(__name__)

KEYLESS = "keyless"
KEY_PREFIX = "key:"
SIGN_HELP = (
    "how the evidence is signed: 'keyless' (default: Sigstore through the lab) or "
    "'key:PATH' (a local PEM private key, for air-gapped use)"
)


@dataclass(frozen=True)
class SignSpec:
    """A parsed `--sign` value: keyless, or the path of a local private key."""

    key_path: Path | None = None

    @property
    def keyless(self) -> bool:
        return self.key_path is None

    @classmethod
    def parse(cls, value: str) -> SignSpec:
        """Parse `keyless` or `key:PATH`.

        Raises:
            ConfigError: anything else, or a key file that can't be read.
        """
        if value == KEYLESS:
            return cls()
        if value.startswith(KEY_PREFIX) and value[len(KEY_PREFIX) :]:
            path = Path(value[len(KEY_PREFIX) :]).expanduser()
            if not path.is_file():
                raise ConfigError(f"--sign {value}: {path} is not a readable key file")
            return cls(path)
        raise ConfigError(f"--sign {value!r}: expected 'keyless' or 'key:PATH'")

    def key_signer(self) -> Signer:
        """The local-key signer (only for `key:PATH`).

        Raises:
            ConfigError: the file is not an unencrypted PEM EC P-256 private key.
        """
        from harness.evidence.signer import KeySigner

        assert self.key_path is not None
        return KeySigner.from_pem_file(self.key_path)


@contextlib.contextmanager
def signer_for(
    spec: SignSpec, keyless: Callable[[], contextlib.AbstractContextManager[Signer]]
) -> Iterator[Signer]:
    """The signer `spec` asks for; `keyless` makes the keyless one (e.g. from a lab)."""
    if not spec.keyless:
        yield spec.key_signer()
        return
    with keyless() as signer:
        yield signer
