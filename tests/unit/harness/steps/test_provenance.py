from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sigstore import dsse

from harness.errors import ConfigError
from harness.steps.provenance import (
    BUILD_TYPE,
    SLSA_PROVENANCE_V1,
    ProvenanceInput,
    provenance_statement,
)

HEX = "a" * 64


def spec(**changes: object) -> ProvenanceInput:
    values: dict[str, object] = {
        "subjects": {"dist/x.whl": HEX},
        "source_uri": "git+https://example.test/x.git",
        "source_commit": "b" * 40,
        "build_command": "python3 -m build",
        "source_date_epoch": 1_700_000_000,
        "builder_image": "sha256:" + "c" * 64,
        "invocation_id": "release-x-1",
        "byproducts": {"determinism/diff.txt": "sha256:" + "d" * 64},
        "started_on": datetime(2024, 1, 1, tzinfo=UTC),
    }
    values.update(changes)
    return ProvenanceInput(**values)  # type: ignore[arg-type]


def test_statement_has_the_slsa_v1_fields_the_issue_names() -> None:
    statement = provenance_statement(spec())
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == SLSA_PROVENANCE_V1
    build = statement["predicate"]["buildDefinition"]
    assert build["buildType"] == BUILD_TYPE
    assert build["externalParameters"]["source"]["digest"] == {"gitCommit": "b" * 40}
    assert build["externalParameters"]["buildCommand"] == "python3 -m build"
    assert build["internalParameters"]["SOURCE_DATE_EPOCH"] == 1_700_000_000
    assert build["internalParameters"]["network"] == "none"
    assert build["resolvedDependencies"][0]["digest"] == {"sha256": "c" * 64}
    assert "L3 controls exercised" in build["internalParameters"]["slsa"]
    byproducts = statement["predicate"]["runDetails"]["byproducts"]
    assert byproducts == [{"name": "determinism/diff.txt", "digest": {"sha256": "d" * 64}}]
    # sigstore-python accepts it as an in-toto Statement
    import json

    dsse.Statement(json.dumps(statement).encode())


def test_never_claims_l3() -> None:
    import json

    text = json.dumps(provenance_statement(spec()))
    assert "SLSA_BUILD_LEVEL_3" not in text


@pytest.mark.parametrize(
    "changes",
    [{"subjects": {}}, {"subjects": {"x": "zz"}}, {"builder_image": "sha256:short"}],
)
def test_bad_input_is_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="provenance"):
        provenance_statement(spec(**changes))
