from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.steps import sbom as sbom_module
from harness.steps.sbom import SbomInput, generate_sbom, subject_kind, validate_sbom

WHEEL = Path("dist/cihub_release_sample-1.0.0-py3-none-any.whl")


def test_python_subject_sbom_is_valid_and_names_pinned_dependencies(sample_subject: Path) -> None:
    sbom = generate_sbom(SbomInput(sample_subject, (WHEEL,), 1_700_000_000))
    assert sbom.generator == "cyclonedx-py"
    assert "pkg:pypi/requests@2.19.0" in sbom.purls
    assert "pkg:pypi/urllib3@1.24.1" in sbom.purls
    assert "pkg:pypi/cihub-release-sample@1.0.0" in sbom.purls
    doc = sbom.document
    assert doc["specVersion"] == "1.6"
    assert doc["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"
    wheel = next(c for c in doc["components"] if c["name"] == WHEEL.name)
    assert wheel["hashes"][0]["alg"] == "SHA-256"


def test_same_inputs_give_the_same_bytes(sample_subject: Path) -> None:
    a = generate_sbom(SbomInput(sample_subject, (WHEEL,), 1_700_000_000))
    b = generate_sbom(SbomInput(sample_subject, (WHEEL,), 1_700_000_000))
    assert a.data == b.data
    c = generate_sbom(SbomInput(sample_subject, (WHEEL,), 1_700_000_001))
    assert c.document["serialNumber"] != a.document["serialNumber"]


def test_syft_describes_a_plain_folder(tmp_path: Path) -> None:
    (tmp_path / "out.bin").write_bytes(b"\x00binary")
    sbom = generate_sbom(SbomInput(tmp_path, (Path("out.bin"),), 0))
    assert sbom.generator == "syft"
    assert subject_kind(tmp_path) == "files"
    names = [c["name"] for c in sbom.document["components"]]
    assert "out.bin" in names
    again = generate_sbom(SbomInput(tmp_path, (Path("out.bin"),), 0))
    assert again.data == sbom.data


def test_no_artifacts_is_bad_input(sample_subject: Path) -> None:
    with pytest.raises(ConfigError, match="no artifacts"):
        generate_sbom(SbomInput(sample_subject, (), 0))


def test_missing_artifact_is_named(sample_subject: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.whl: sbom: artifact is missing"):
        generate_sbom(SbomInput(sample_subject, (Path("dist/nope.whl"),), 0))


def test_validation_rejects_a_broken_document(sample_subject: Path) -> None:
    doc = generate_sbom(SbomInput(sample_subject, (WHEEL,), 0)).document
    doc["components"][0]["type"] = "spaceship"
    with pytest.raises(ConfigError, match=r"fails CycloneDX 1\.6 validation"):
        validate_sbom(json.dumps(doc).encode())


@pytest.mark.parametrize("data", [b"not json", b"[]", b'{"specVersion": "1.4"}'])
def test_validation_rejects_hostile_input(data: bytes) -> None:
    with pytest.raises(ConfigError, match="sbom"):
        validate_sbom(data)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("components", 0, "type"), "spaceship"),
        (("components", 0, "hashes"), [{"alg": "SHA-256", "content": "zz"}]),
        (("components", 0, "licenses"), [{"license": {"id": "NOT-AN-SPDX-ID"}}]),
        (("metadata", "timestamp"), "yesterday"),
        (("serialNumber",), "not-a-urn"),
        (("metadata", "component", "bom-ref"), 7),
    ],
)
def test_the_fast_check_agrees_with_the_library_validator(
    sample_subject: Path, path: tuple[object, ...], value: object
) -> None:
    doc = generate_sbom(SbomInput(sample_subject, (WHEEL,), 0)).document
    assert sbom_module._fast_validator().is_valid(doc)
    target = doc
    for part in path[:-1]:
        target = target[part]  # type: ignore[index]
    target[path[-1]] = value  # type: ignore[index]
    library = sbom_module._validator().validate_str(json.dumps(doc))
    assert library is not None, "the library accepts it: not a useful case"
    assert not sbom_module._fast_validator().is_valid(doc)
    with pytest.raises(ConfigError, match=r"fails CycloneDX 1\.6 validation: "):
        validate_sbom(json.dumps(doc).encode())
