from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness import _exit
from harness._cli import main
from harness.steps.policy import (
    PolicyError,
    PolicySet,
    check_rego_v1,
    default_policy_dir,
    run_policy_tests,
)

Capsys = pytest.CaptureFixture[str]
GOOD_INPUT = Path(__file__).resolve().parents[2] / "data" / "release" / "gate-allow.json"


def good_input() -> dict[str, object]:
    value: dict[str, object] = json.loads(GOOD_INPUT.read_text())
    return value


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(default_policy_dir(), folder)
    return folder


def test_the_project_policy_tests_pass() -> None:
    results = run_policy_tests(default_policy_dir())
    assert len(results) >= 20
    assert [r for r in results if not r.passed] == []


def test_a_genuine_release_is_allowed() -> None:
    decision = PolicySet.load(default_policy_dir()).evaluate(good_input())
    assert decision.allow, decision.reasons
    assert {d.name for d in decision.decisions} == {
        "determinism",
        "referrers",
        "rekor",
        "signer",
        "vulns",
        "workflows",
    }


def _deny(change: object) -> tuple[str, ...]:
    value = good_input()
    change(value)  # type: ignore[operator]
    decision = PolicySet.load(default_policy_dir()).evaluate(value)
    assert not decision.allow
    return decision.reasons


# The deny paths, each with its own reason, on a prebuilt gate input.
def test_deny_a_referrer_removed() -> None:
    reasons = _deny(
        lambda v: v.update(
            referrers=[r for r in v["referrers"] if r["artifactType"] != "application/openvex+json"]
        )
    )
    assert reasons == ("referrers: no application/openvex+json referrer attached to the artifact",)


def test_deny_a_critical_vulnerability_with_no_vex() -> None:
    finding = {
        "id": "CIHUB-TEST-0001",
        "purl": "pkg:pypi/urllib3@1.24.1",
        "severity": "critical",
    }

    def change(v: dict[str, object]) -> None:
        v["vulns"] = {
            "counts": {"critical": 1, "high": 0, "medium": 0, "low": 0, "unknown": 0},
            "findings": [finding],
        }

    reasons = _deny(change)
    assert any("CIHUB-TEST-0001 (critical)" in r for r in reasons)
    assert all(r.startswith("vulns:") for r in reasons)


def test_deny_a_wrong_signer_identity() -> None:
    def change(v: dict[str, object]) -> None:
        v["attestations"][1]["signer"] = {  # type: ignore[index]
            "identity": "mallory@evil.test",
            "issuer": "https://oidc.lab.cihub",
        }

    reasons = _deny(change)
    assert reasons == (
        "signer: vex: signed by mallory@evil.test (https://oidc.lab.cihub), not an allowed "
        "identity",
    )


def test_deny_a_non_reproducible_subject() -> None:
    reasons = _deny(
        lambda v: v.update(determinism={"verdict": "not-reproducible", "diff_empty": False})
    )
    assert "determinism: the dual build found not-reproducible" in reasons


def test_deny_a_workflow_with_an_unpinned_action() -> None:
    def change(v: dict[str, object]) -> None:
        v["workflows"]["files"][0]["jobs"][0]["uses"] = ["actions/checkout@v4"]  # type: ignore[index]

    (reason,) = _deny(change)
    assert "actions/checkout@v4 is not pinned by a full commit SHA" in reason


def test_deny_a_tampered_attestation() -> None:
    def change(v: dict[str, object]) -> None:
        v["attestations"][2].update(  # type: ignore[index]
            verified=False, reason="the DSSE payload does not match the attestation file"
        )

    reasons = _deny(change)
    assert reasons == (
        "rekor: provenance: does not verify: the DSSE payload does not match the attestation file",
    )


def test_a_policy_with_a_syntax_error_is_refused(policy_dir: Path) -> None:
    (policy_dir / "broken.rego").write_text("package cihub.broken\n\nallow if {\n")
    with pytest.raises(PolicyError, match=r"broken\.rego: policy does not parse"):
        PolicySet.load(policy_dir)


def test_a_policy_with_an_unknown_builtin_is_refused(policy_dir: Path) -> None:
    (policy_dir / "unknown.rego").write_text(
        "package cihub.unknown\n\nallow if no_such_builtin(input)\n\nreasons := set()\n"
    )
    with pytest.raises(PolicyError, match="Function not found: no_such_builtin"):
        PolicySet.load(policy_dir)


def test_a_failing_builtin_is_an_error_not_a_silent_undefined(policy_dir: Path) -> None:
    (policy_dir / "strict.rego").write_text(
        "package cihub.strict\n\n"
        'reasons contains "too big" if to_number(input.artifact.size) > 10\n\n'
        "allow if count(reasons) == 0\n"
    )
    policies = PolicySet.load(policy_dir)
    value = good_input()
    value["artifact"] = {"size": "not a number"}
    with pytest.raises(PolicyError, match="policy"):
        policies.evaluate(value)


@pytest.mark.parametrize(
    "source",
    [
        "package cihub.old\n\nallow {\n\ttrue\n}\n",
        'package cihub.old\n\nreasons[msg] {\n\tmsg := "x"\n}\n',
        "package cihub.old\n\nallow = true {\n\tinput.x\n}\n",
        "package cihub.old\n\nf(x) {\n\tx\n}\n",
    ],
)
def test_pre_v1_syntax_is_refused(policy_dir: Path, source: str) -> None:
    (policy_dir / "old.rego").write_text(source)
    with pytest.raises(PolicyError, match="Rego v1 only"):
        PolicySet.load(policy_dir)


def test_v1_syntax_and_object_literals_pass_the_check() -> None:
    check_rego_v1(
        'package cihub.x\n\nconfig := {\n\t"a": 1,\n}\n\nallow if {\n\ttrue\n}\n'
        'reasons contains msg if {\n\tmsg := "x {"\n}\n# old {\n',
        "x.rego",
    )


def test_a_policy_outside_the_cihub_package_is_refused(policy_dir: Path) -> None:
    (policy_dir / "other.rego").write_text("package other\n\nallow := true\n")
    with pytest.raises(PolicyError, match=r"must be cihub\.<name>"):
        PolicySet.load(policy_dir)


def test_a_policy_without_allow_denies_with_a_reason(policy_dir: Path) -> None:
    (policy_dir / "silent.rego").write_text("package cihub.silent\n\nx := 1\n")
    decision = PolicySet.load(policy_dir).evaluate(good_input())
    assert not decision.allow
    assert "silent: denied (allow is not true, no reason given)" in decision.reasons


def test_hostile_input_cannot_flip_the_gate() -> None:
    value = good_input()
    value["determinism"] = {"verdict": "reproducible", "diff_empty": "yes"}  # not `true`
    value["allow"] = True
    decision = PolicySet.load(default_policy_dir()).evaluate(value)
    assert not decision.allow


def test_cli_policy_test_passes(capsys: Capsys) -> None:
    assert main(["policy", "test"]) == _exit.SUCCESS
    assert "0 failed" in capsys.readouterr().out


def test_cli_policy_test_reports_a_failing_case(policy_dir: Path, capsys: Capsys) -> None:
    cases = json.loads((policy_dir / "tests" / "signer.json").read_text())
    cases["cases"][0]["allow"] = False
    (policy_dir / "tests" / "signer.json").write_text(json.dumps(cases))
    assert main(["policy", "test", "--policy", str(policy_dir)]) == _exit.FAILED
    assert "FAIL" in capsys.readouterr().err


def test_cli_policy_eval(tmp_path: Path, capsys: Capsys) -> None:
    assert main(["policy", "eval", "--input", str(GOOD_INPUT), "--json"]) == _exit.SUCCESS
    assert json.loads(capsys.readouterr().out)["allow"] is True
    bad = tmp_path / "bad.json"
    value = good_input()
    value["referrers"] = []
    bad.write_text(json.dumps(value))
    assert main(["policy", "eval", "--input", str(bad)]) == _exit.FAILED
    assert "DENY" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["{", "[]"])
def test_cli_policy_eval_bad_input(tmp_path: Path, text: str, capsys: Capsys) -> None:
    path = tmp_path / "in.json"
    path.write_text(text)
    assert main(["policy", "eval", "--input", str(path)]) == _exit.ERROR
    assert str(path) in capsys.readouterr().err


def test_cli_policy_eval_broken_policy_exits_2(policy_dir: Path, capsys: Capsys) -> None:
    (policy_dir / "broken.rego").write_text("package cihub.broken\nallow if {\n")
    code = main(["policy", "eval", "--input", str(GOOD_INPUT), "--policy", str(policy_dir)])
    assert code == _exit.ERROR
    assert "broken.rego" in capsys.readouterr().err


def test_truthy_strings_are_not_true() -> None:
    value = good_input()
    value["attestations"][0].update(verified="yes", inclusion_verified=1)  # type: ignore[index]
    reasons = PolicySet.load(default_policy_dir()).evaluate(value).reasons
    assert "rekor: sbom: inclusion proof not verified" in reasons
    assert any(r.startswith("rekor: sbom: does not verify") for r in reasons)
