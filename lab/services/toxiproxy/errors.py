"""API errors with the messages and status codes of upstream Toxiproxy's v2 API."""

from __future__ import annotations

from dataclasses import dataclass


class ApiError(Exception):
    """An error the API answers with `{"error": message, "status": status}`."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def to_json(self) -> dict[str, object]:
        return {"error": self.message, "status": self.status}


@dataclass(frozen=True)
class ErrorKind:
    """One of upstream's error values; `error()` makes a fresh exception from it."""

    message: str
    status: int

    def error(self, detail: str | None = None) -> ApiError:
        """The error, with `detail` appended after a colon as upstream's `joinError` does."""
        if detail is None:
            return ApiError(self.message, self.status)
        return ApiError(f"{self.message}: {detail}", self.status)


BAD_REQUEST_BODY = ErrorKind("bad request body", 400)
MISSING_FIELD = ErrorKind("missing required field", 400)
PROXY_NOT_FOUND = ErrorKind("proxy not found", 404)
PROXY_ALREADY_EXISTS = ErrorKind("proxy already exists", 409)
INVALID_STREAM = ErrorKind("stream was invalid, can be either upstream or downstream", 400)
INVALID_TOXIC_TYPE = ErrorKind("invalid toxic type", 400)
TOXIC_ALREADY_EXISTS = ErrorKind("toxic already exists", 409)
TOXIC_NOT_FOUND = ErrorKind("toxic not found", 404)


def internal(message: str) -> ApiError:
    """An error without a status of its own, which upstream reports as 500."""
    return ApiError(message, 500)
