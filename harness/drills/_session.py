"""What every drill that runs dual builds shares (determinism, release): the call of
`run_determinism` with the drill's options and Docker client, and the build session it hands
over, kept so `cancel()` can stop it."""

from __future__ import annotations

import threading

import docker

from harness.build import BuildSession
from harness.determinism import (
    DeterminismResult,
    DeterminismScenario,
    DrillOptions,
    run_determinism,
)
from harness.drills.runner import Progress
from harness.evidence import EvidenceBundle


class DualBuildDrill:
    """Base of the drills that dual-build a subject.

    `cancel()` runs from a signal handler on the main thread while the steps run, possibly on
    another: the lock makes the hand-over of the session and its read atomic.

    Args:
        options: how to build (image mode, workers, ...).
        client: the Docker client (default: from the environment).

    Example:
        >>> class MyDrill(DualBuildDrill):
        ...     def run(self, bundle, progress):
        ...         result = self._dual_build(scenario, bundle, progress)
    """

    def __init__(
        self, options: DrillOptions | None = None, client: docker.DockerClient | None = None
    ) -> None:
        self._options = options
        self._client = client
        self._session: BuildSession | None = None
        self._session_lock = threading.Lock()

    def cancel(self) -> None:
        """Remove the running builds; no new one starts."""
        with self._session_lock:
            session = self._session
        if session is not None:
            session.cancel()

    def _dual_build(
        self, scenario: DeterminismScenario, bundle: EvidenceBundle, progress: Progress | None
    ) -> DeterminismResult:
        return run_determinism(
            scenario,
            bundle,
            client=self._client,
            options=self._options,
            progress=progress,
            on_session=self._keep_session,
        )

    def _keep_session(self, session: BuildSession) -> None:
        with self._session_lock:
            self._session = session
