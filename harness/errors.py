"""Errors raised by the harness. Only the CLI and the pytest plugin catch them."""

from __future__ import annotations

from lab.errors import LabError


class CihubError(Exception):
    """Root of every error the harness raises."""

    def diagnostics(self) -> str:
        """A one-line explanation for people, with the wrapped cause when there is one."""
        cause = self.__cause__
        if isinstance(cause, LabError):
            return f"{self}: {cause.diagnostics()}"
        if cause is not None and str(cause) and str(cause) not in str(self):
            return f"{self} (cause: {type(cause).__name__}: {str(cause).strip().splitlines()[0]})"
        return str(self)


class ConfigError(CihubError):
    """Bad input: a malformed scenario, file, option or record. Exit code 2."""


class InfraError(CihubError):
    """The lab or an outside tool failed (Docker, registry, fault proxy). Exit code 2."""


class StepFailed(CihubError):
    """A drill step ran and its check failed. Exit code 1."""


class VerificationFailed(CihubError):
    """Evidence did not verify. Exit code 1."""
