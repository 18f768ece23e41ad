"""The build session a drill keeps so `cancel()` can stop it: shared by every drill that runs
dual builds (determinism, release)."""

from __future__ import annotations

import threading

from harness.build import BuildSession


class BuildSessionCancel:
    """Keeps the running `BuildSession` (handed over by `run_determinism(on_session=...)`) and
    stops it on `cancel()`.

    `cancel()` runs from a signal handler on the main thread while the steps run, possibly on
    another: the lock makes the hand-over and the read atomic.

    Example:
        >>> class MyDrill(BuildSessionCancel):
        ...     def run(self, bundle, progress):
        ...         run_determinism(..., on_session=self._keep_session)
    """

    def __init__(self) -> None:
        self._session: BuildSession | None = None
        self._session_lock = threading.Lock()

    def cancel(self) -> None:
        """Remove the running builds; no new one starts."""
        with self._session_lock:
            session = self._session
        if session is not None:
            session.cancel()

    def _keep_session(self, session: BuildSession) -> None:
        with self._session_lock:
            self._session = session
