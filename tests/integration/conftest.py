"""Fixtures the integration tests share."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local PEM signing key (P-256, PKCS#8), for tests about builds rather than keyless
    signing (which has its own tests)."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path_factory.mktemp("key") / "signing-key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path
