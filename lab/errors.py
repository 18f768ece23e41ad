"""Errors raised by the lab. Every one carries a one-line message that names what failed."""

from __future__ import annotations


class LabError(Exception):
    """Root of every error the lab raises."""

    def diagnostics(self) -> str:
        """A one-line explanation for people, with the wrapped cause when there is one."""
        cause = self.__cause__
        if cause is not None and str(cause) and str(cause) not in str(self):
            return f"{self} (cause: {type(cause).__name__}: {_first_line(cause)})"
        return str(self)


class DockerUnavailable(LabError):
    """No Docker engine answers."""


class ImageBuildError(LabError):
    """A lab image could not be built or bootstrapped."""


class ServiceStartError(LabError):
    """A lab service did not start or did not become healthy."""


class PortInUse(ServiceStartError):
    """A host port the lab was asked to publish is already taken."""


class LabAlreadyUp(LabError):
    """A persistent lab already runs; it must be brought down first."""


class LabNotFound(LabError):
    """No lab matches the request."""


class FaultProxyError(LabError):
    """The fault proxy's API refused a request or could not be reached."""


class RegistryError(LabError):
    """The OCI registry refused a request or could not be reached."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
