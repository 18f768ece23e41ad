"""compose.yaml is the same lab as `Lab`, valid compose-spec, readable by docker-compose 1.29."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import pytest
import yaml

from lab import labels
from lab.config import PROXIED_SERVICES, SIGSTORE_PROXIED_SERVICES
from lab.containers.base import Hardening
from lab.resources import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "compose.yaml"
LAB_SERVICES = {"registry", "faultproxy", "rekor", "fulcio", "tsa"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _compose_spec_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema") / "builtin_schemas" / "vendor"
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text())
    return schema


def test_compose_yaml_is_valid_compose_spec(compose: dict[str, Any]) -> None:
    jsonschema.validate(compose, _compose_spec_schema())


def test_the_schema_check_can_fail(compose: dict[str, Any]) -> None:
    broken = {**compose, "services": {"registry": {"ports": "not-a-list", "image": 3}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, _compose_spec_schema())


def test_no_top_level_name_for_docker_compose_1_29(compose: dict[str, Any]) -> None:
    # 1.29: "'name' does not match any of the regexes: '^x-'".
    assert "name" not in compose


def test_all_five_lab_services_labelled_and_hardened(compose: dict[str, Any]) -> None:
    services = compose["services"]
    lab_services = {name for name, spec in services.items() if not spec.get("profiles")}
    assert lab_services == LAB_SERVICES
    for name in LAB_SERVICES:
        spec = services[name]
        assert spec["labels"][labels.MANAGED] == "true", name
        assert spec["labels"][labels.LAB] == "compose", name
        assert spec["labels"][labels.SERVICE] == name, name
        assert spec["cap_drop"] == ["ALL"] and "cap_add" not in spec, name
        assert "no-new-privileges:true" in spec["security_opt"], name
        assert spec["read_only"] is True and spec["pids_limit"] > 0 and spec["mem_limit"], name
        assert spec["user"] and not str(spec["user"]).startswith("0"), name
        assert spec["healthcheck"]["test"][0] == "CMD", name
        image = spec["image"]
        assert "cihub/" in image, name
        dockerfile = spec["build"]["dockerfile"]
        assert (PROJECT_ROOT / dockerfile).is_file(), name


def test_same_hardening_limits_as_the_lab(compose: dict[str, Any]) -> None:
    default = Hardening()
    assert compose["services"]["registry"]["mem_limit"] == default.mem_limit
    assert compose["services"]["faultproxy"]["network_mode"] == "host"


def test_fault_proxy_routes_cover_every_lab_proxy_and_published_port(
    compose: dict[str, Any],
) -> None:
    routes = json.loads((PROJECT_ROOT / "images/faultproxy/compose-proxies.json").read_text())
    by_name = {route["name"]: route for route in routes}
    expected = PROXIED_SERVICES + SIGSTORE_PROXIED_SERVICES
    assert set(by_name) == {proxied.name for proxied in expected}
    for proxied in expected:
        route = by_name[proxied.name]
        assert route["listen"] == f"127.0.0.1:{proxied.listen_port}"
        # The upstream is the service's port published on 127.0.0.1 by compose.yaml.
        upstream_port = route["upstream"].rsplit(":", 1)[1]
        published = compose["services"][proxied.upstream_host]["ports"]
        assert f"127.0.0.1:{upstream_port}:{proxied.upstream_port}" in published


def test_the_trust_domain_is_mounted_read_only_for_each_sigstack_role(
    compose: dict[str, Any],
) -> None:
    for role in ("rekor", "fulcio", "tsa"):
        mounts = compose["services"][role]["volumes"]
        trust = [m for m in mounts if m.endswith(":/etc/cihub/sigstack:ro")]
        assert trust and trust[0].startswith("${CIHUB_TRUST_DOMAIN:-"), role


def test_volumes_are_labelled(compose: dict[str, Any]) -> None:
    for name in ("registry-data", "rekor-data"):
        assert compose["volumes"][name]["labels"][labels.LAB] == "compose"
