"""The compare step that runs beside the culprit search: an interrupted wait for it stops
diffoscope and records a cancellation; a compare that failed by itself is an error."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from harness import determinism
from harness.compare.outputs import CompareRequest


class _Bundle:
    audit = None

    def __init__(self) -> None:
        self.steps: list[tuple[str, str, str]] = []

    def record_step(self, name: str, outcome: str, _duration: float, **fields: Any) -> None:
        self.steps.append((name, outcome, fields["detail"]))


class _InterruptedWait:
    """The future as the main thread sees it when Ctrl-C lands while it waits: the first
    `result()` raises KeyboardInterrupt; the compare thread itself goes on."""

    def __init__(self, real: Future[Any]) -> None:
        self.real = real
        self.waits = 0

    def result(self, timeout: float | None = None) -> Any:
        self.waits += 1
        if self.waits == 1:
            raise KeyboardInterrupt
        return self.real.result(timeout)

    def done(self) -> bool:
        return self.real.done()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return self.real.exception(timeout)


def _request(tmp_path: Path) -> CompareRequest:
    return CompareRequest(tmp_path / "a", tmp_path / "b", tmp_path, stop=threading.Event())


def test_an_interrupted_wait_stops_the_compare_and_records_a_cancellation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped = threading.Event()

    def slow_compare(request: CompareRequest, _audit: object) -> None:
        assert request.stop is not None
        if request.stop.wait(30):  # diffoscope killed by its stop event
            stopped.set()
        raise RuntimeError("diffoscope killed")

    monkeypatch.setattr(determinism, "compare_outputs", slow_compare)
    bundle = _Bundle()
    comparing = determinism._Comparing(_request(tmp_path), bundle)  # type: ignore[arg-type]
    real = comparing._future
    comparing._future = _InterruptedWait(real)  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        comparing.result()
    assert stopped.is_set(), "the compare was left running"
    assert real.done()
    assert bundle.steps == [("compare", "cancellation", "stopped: KeyboardInterrupt")]


def test_a_compare_that_fails_by_itself_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_compare(request: CompareRequest, _audit: object) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(determinism, "compare_outputs", broken_compare)
    bundle = _Bundle()
    request = _request(tmp_path)
    comparing = determinism._Comparing(request, bundle)  # type: ignore[arg-type]
    with pytest.raises(OSError, match="no space left"):
        comparing.result()
    assert bundle.steps == [("compare", "error", "no space left on device")]
    assert request.stop is not None and not request.stop.is_set()
