"""Builder-image facts shared by the unit tests of builds (no Docker)."""

from __future__ import annotations

from harness.variations import Capabilities

FULL_BUILDER = Capabilities(
    locales=("C.utf8", "fr_CH.utf8"),
    faketime_library="/usr/lib/faketime/libfaketime.so.1",
    disorderfs=True,
    setarch=True,
    cpus=2,
    fuse_device=True,
)
"""A builder that can apply every variation, opt-in ones included, on two CPUs."""
