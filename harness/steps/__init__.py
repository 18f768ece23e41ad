"""Reusable typed steps of the drills: frozen input in, frozen result out, raise on failure.

`sbom` (CycloneDX 1.6), `vuln` (OSV matching), `vex` (OpenVEX v0.2), `provenance` (SLSA
provenance v1 in an in-toto Statement) and `policy` (the Rego gate, in-process through regopy).
Bad input raises `ConfigError` naming the file and field; a check that ran and failed raises
`StepFailed`.
"""

from __future__ import annotations
