"""HTTP plumbing of the OCI client: a bounded-retry session, a connection that remembers why a
send failed, minimal Bearer-token auth and one-line descriptions of failures.

No stability guarantees; `lab.oci` is the public API.
"""

from __future__ import annotations

import errno
import http.client
import logging
import re
import socket
from collections.abc import Mapping
from typing import Any

import requests
import requests.auth
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

_logger = logging.getLogger(__name__)

#: Methods retried after the request went out (a read error or a 502/503/504). A connection
#: that could not be opened is retried for every method: nothing was sent yet.
RETRYABLE_METHODS = frozenset({"GET", "HEAD"})
_RETRY_STATUSES = (502, 503, 504)


class _SendErrorMemory:
    """Remembers the first OSError a send raised during the current request.

    urllib3 swallows ECONNRESET/EPIPE while sending a request (the server may legitimately
    answer and close early) and then reads the response; after a reset that read only sees
    end-of-file, which http.client reports as "Remote end closed connection without response".
    When no response can be read, the remembered send error is raised instead, so a reset
    during an upload is reported as a reset.
    """

    _send_error: OSError | None = None

    def _remember(self, exc: OSError) -> None:
        if self._send_error is None:
            self._send_error = exc

    def _forget(self) -> None:
        self._send_error = None

    def _replacement(self, exc: BaseException) -> OSError | None:
        sent = self._send_error
        if sent is None or not isinstance(exc, http.client.RemoteDisconnected | OSError):
            return None
        return type(sent)(sent.errno, sent.strerror)

    # Mixed in before urllib3's connection classes: super() is their implementation.
    def request(self, *args: Any, **kwargs: Any) -> None:
        self._forget()
        super().request(*args, **kwargs)  # type: ignore[misc]

    def send(self, data: Any) -> None:
        try:
            super().send(data)  # type: ignore[misc]
        except OSError as exc:
            self._remember(exc)
            raise

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]
        except (http.client.RemoteDisconnected, OSError) as exc:
            replacement = self._replacement(exc)
            if replacement is None:
                raise
            raise replacement from exc


class _ResetAwareHTTPConnection(_SendErrorMemory, HTTPConnection):
    pass


class _ResetAwareHTTPSConnection(_SendErrorMemory, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _ResetAwareHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _ResetAwareHTTPSConnection


class _RegistryAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def bounded_retry(retries: int) -> Retry:
    """At most `retries` retries, sub-second backoff, never honouring a long Retry-After."""
    return Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        allowed_methods=RETRYABLE_METHODS,
        status_forcelist=_RETRY_STATUSES,
        backoff_factor=0.2,
        backoff_max=1.0,
        respect_retry_after_header=False,
        raise_on_status=False,
        raise_on_redirect=False,
    )


def build_session(auth: tuple[str, str] | None, retries: int) -> requests.Session:
    """A session with bounded retries on every scheme and HTTP Basic auth when given."""
    session = requests.Session()
    adapter = _RegistryAdapter(max_retries=bounded_retry(retries))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if auth is not None:
        session.auth = requests.auth.HTTPBasicAuth(*auth)
    session.headers["User-Agent"] = "cihub-oci/1"
    return session


class BearerAuth(requests.auth.AuthBase):
    """Sends a registry token; `repr` never shows it."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(token='***')"


_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


def bearer_challenge(response: requests.Response) -> dict[str, str] | None:
    """The parameters of a `WWW-Authenticate: Bearer realm=...,service=...,scope=...` header."""
    header = response.headers.get("WWW-Authenticate", "")
    scheme, _, params = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    found = dict(_CHALLENGE_PARAM.findall(params))
    return found if "realm" in found else None


def fetch_token(
    session: requests.Session,
    challenge: Mapping[str, str],
    auth: tuple[str, str] | None,
    timeout: float,
) -> str:
    """Ask the challenge's realm for a token (the distribution token protocol, GET form).

    Raises:
        requests.RequestException: the realm could not be reached.
        ValueError: the realm refused or answered without a token.
    """
    params = {key: challenge[key] for key in ("service", "scope") if key in challenge}
    basic = requests.auth.HTTPBasicAuth(*auth) if auth is not None else None
    response = session.get(
        challenge["realm"], params=params, auth=basic, timeout=(timeout, timeout)
    )
    if response.status_code != 200:
        raise ValueError(f"token realm {challenge['realm']} answered HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError as exc:
        raise ValueError(f"token realm {challenge['realm']} answered non-JSON") from exc
    token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ValueError(f"token realm {challenge['realm']} answered without a token")
    return token


def describe_connection_error(exc: BaseException) -> str:
    """A short phrase for a failed connection: "connection reset by peer", "connection refused",
    "timed out", ... found by walking the exception's causes and arguments."""
    for cause in _causes(exc):
        if isinstance(cause, ConnectionResetError) or _errno(cause) == errno.ECONNRESET:
            return "connection reset by peer"
        if isinstance(cause, BrokenPipeError) or _errno(cause) == errno.EPIPE:
            return "connection reset by peer (broken pipe)"
        if isinstance(cause, ConnectionRefusedError) or _errno(cause) == errno.ECONNREFUSED:
            return "connection refused"
        if isinstance(cause, http.client.RemoteDisconnected):
            return "connection closed by peer without a response"
        if isinstance(cause, socket.gaierror):
            return f"name resolution failed ({cause.strerror})"
    for cause in _causes(exc):
        if isinstance(cause, requests.ConnectTimeout):
            return "timed out connecting"
        if isinstance(cause, requests.Timeout | TimeoutError | socket.timeout):
            return "timed out waiting for a response"
    text = str(exc).strip().splitlines()
    return f"connection failed ({type(exc).__name__}: {text[0] if text else 'no detail'})"


def _errno(exc: BaseException) -> int | None:
    return exc.errno if isinstance(exc, OSError) else None


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception, its __cause__/__context__ chain, its exception args and urllib3 reasons."""
    seen: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending and len(seen) < 32:
        current = pending.pop(0)
        if any(current is known for known in seen):
            continue
        seen.append(current)
        reason = getattr(current, "reason", None)
        linked = [current.__cause__, current.__context__, reason, *current.args]
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return seen


def error_detail(response: requests.Response) -> str:
    """`HTTP 404 MANIFEST_UNKNOWN (manifest unknown)`: the status and the registry's first error
    code, or the first line of a non-JSON body."""
    status = f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        if isinstance(first, dict):
            code = str(first.get("code", "")).strip()
            message = str(first.get("message", "")).strip()
            return " ".join(
                part for part in (status, code, f"({message})" if message else "") if part
            )
    text = response.text.strip().splitlines() if response.content else []
    if text and len(text[0]) <= 200:
        return f"{status} ({text[0]})"
    return f"{status} {response.reason}" if response.reason else status
