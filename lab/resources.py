"""One way to find the project's data files (schemas, policies, image contexts, services).

The data lives beside the packages in the source tree (`schema/`, `policies/`, `images/`) and
`lab/services/` lives inside the `lab` package. Everything that reads those files goes through
`resource_path`, so moving the data into a wheel later changes this module alone.
"""

from __future__ import annotations

from pathlib import Path

from lab.errors import LabError

_PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = _PACKAGE_DIR.parent
"""The folder that holds `lab/`, `harness/`, `schema/`, `images/` and `policies/`."""


def resource_path(*parts: str) -> Path:
    """Return the path of a project data file or folder, which must exist.

    Args:
        parts: path parts below the project root, e.g. ``("schema", "pipeline_run.v1.2.json")``.

    Raises:
        LabError: the file is not there (a broken install); the message names the path.

    Example:
        >>> resource_path("schema").is_dir()
        True
    """
    path = PROJECT_ROOT.joinpath(*parts)
    if not path.exists():
        raise LabError(
            f"{path}: project data file is missing (is cihub installed from its source?)"
        )
    return path
