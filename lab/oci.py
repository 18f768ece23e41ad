"""A small, typed OCI distribution client for the lab's registry (distribution 2.8 and newer).

It pushes and pulls blobs and manifests with every digest verified, attaches OCI 1.1 referrers
(artifact manifests with `subject` and `artifactType`) and lists them. Distribution 2.8 has no
referrers API, so `attach_referrer` also maintains the OCI 1.1 referrers tag schema (an image
index tagged `sha256-<hex>`) whenever the registry does not answer with `OCI-Subject`, and
`list_referrers` tries `GET /v2/<repo>/referrers/<digest>` first and falls back to that tag.

Requests go through one `requests.Session` with bounded urllib3 retries: a refused connection
is retried for any method (nothing was sent), a read error or a 502/503/504 only for GET and
HEAD, with sub-second backoff and no `Retry-After` waits, so a dead registry fails within a few
seconds. Every failure is a `RegistryError` whose one-line message names the problem, the
registry URL, the repository and the reference. HTTP Basic auth (the lab's htpasswd) is sent
when given; a `WWW-Authenticate: Bearer` challenge is answered once per request with a token
from the challenge's realm (GET form of the token protocol; no OAuth2 POST, no refresh tokens).
Credentials and tokens are never logged.

oras-py is not used: every request of its `Registry` goes through a retry decorator that sleeps
about 131 s on a dead registry, it pushes manifests to tags and re-serializes them from dicts
(so a pushed manifest's digest is not the digest of the caller's bytes), and it uploads only
files under the current folder; none of its parts fits without one of those traps.

Example:
    >>> client = OciClient("http://127.0.0.1:5055")  # doctest: +SKIP
    >>> config = client.push_blob("demo", b"{}")  # doctest: +SKIP
    >>> ref = client.attach_referrer(  # doctest: +SKIP
    ...     "demo", subject.digest, subject.media_type, subject.size,
    ...     "application/spdx+json", [Blob("application/spdx+json", sbom_bytes)])
    >>> [d.digest for d in client.list_referrers("demo", subject.digest)]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests

from lab._internal.oci_http import (
    BearerAuth,
    bearer_challenge,
    build_session,
    describe_connection_error,
    error_detail,
    fetch_token,
)
from lab.errors import RegistryError

__all__ = [
    "DEFAULT_MANIFEST_ACCEPT",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "EMPTY_DESCRIPTOR",
    "EMPTY_JSON",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Blob",
    "Descriptor",
    "ImageIndex",
    "ImageManifest",
    "OciClient",
    "PulledManifest",
    "digest_of",
    "referrers_tag",
]

_logger = logging.getLogger(__name__)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DEFAULT_MANIFEST_ACCEPT: tuple[str, ...] = (
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
)
#: The OCI empty JSON blob, `{}`: the config of artifact manifests.
EMPTY_JSON = b"{}"

_DIGEST = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_REPO = re.compile(
    r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
_CHUNK = 1 << 20
_MAX_REFERRER_PAGES = 100


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """The OCI digest (`<algorithm>:<hex>`) of `data`.

    Args:
        data: the exact bytes.
        algorithm: "sha256" (default) or "sha512".

    Raises:
        ValueError: the algorithm is neither.

    Example:
        >>> digest_of(b"{}")
        'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a'
    """
    if algorithm not in _HEX_LENGTH:
        raise ValueError(f"unsupported digest algorithm {algorithm!r} (use sha256 or sha512)")
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def referrers_tag(digest: str) -> str:
    """The OCI 1.1 referrers tag-schema tag of a subject digest: `<alg>-<hex>`.

    Raises:
        ValueError: `digest` is not a digest.

    Example:
        >>> referrers_tag("sha256:" + "ab" * 32) == "sha256-" + "ab" * 32
        True
    """
    algorithm, encoded = _split_digest(digest)
    return f"{algorithm}-{encoded[:64]}"


def _split_digest(digest: str) -> tuple[str, str]:
    match = _DIGEST.match(digest) if isinstance(digest, str) else None
    if match is None:
        raise ValueError(f"not an OCI digest: {digest!r}")
    algorithm, encoded = match.group(1), match.group(2)
    expected = _HEX_LENGTH.get(algorithm)
    if expected is not None and not re.fullmatch(f"[a-f0-9]{{{expected}}}", encoded):
        raise ValueError(f"not a {algorithm} digest: {digest!r}")
    return algorithm, encoded


def _is_digest(reference: str) -> bool:
    return ":" in reference


def _check_repo(repo: str) -> None:
    if not isinstance(repo, str) or _REPO.match(repo) is None:
        raise ValueError(f"not a repository name: {repo!r}")


def _check_reference(reference: str) -> None:
    if _is_digest(reference):
        _split_digest(reference)
    elif not isinstance(reference, str) or _TAG.match(reference) is None:
        raise ValueError(f"not a tag or digest: {reference!r}")


def _frozen_annotations(value: Any, where: str) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"{where}: annotations must map strings to strings")
    return MappingProxyType(dict(value))


def _load_json_object(data: bytes | str | Mapping[str, Any], what: str) -> Mapping[str, Any]:
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise ValueError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} is not a JSON object")
    return data


def _canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """Compact JSON in insertion order: the bytes this client pushes for documents it builds."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor.

    Attributes:
        media_type: what the content is, e.g. `application/vnd.oci.image.manifest.v1+json`.
        digest: `sha256:<hex>` of the content's exact bytes.
        size: the content's length in bytes.
        artifact_type: the artifact type of a referrer manifest, when known.
        annotations: string-to-string metadata (read-only).

    Example:
        >>> Descriptor.from_json({"mediaType": OCI_EMPTY, "digest": digest_of(b"{}"), "size": 2})
        ... # doctest: +ELLIPSIS
        Descriptor(media_type='application/vnd.oci.empty.v1+json', ...)
    """

    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _split_digest(self.digest)
        if not isinstance(self.media_type, str) or not self.media_type:
            raise ValueError(f"descriptor {self.digest}: mediaType must be a non-empty string")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ValueError(f"descriptor {self.digest}: size must be a non-negative integer")
        if self.artifact_type is not None and not isinstance(self.artifact_type, str):
            raise ValueError(f"descriptor {self.digest}: artifactType must be a string")
        annotations = _frozen_annotations(self.annotations, f"descriptor {self.digest}")
        object.__setattr__(self, "annotations", annotations)

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any]) -> Descriptor:
        """Parse a descriptor from its JSON (bytes, text or an already decoded object).

        Raises:
            ValueError: not a descriptor (a field is missing or has the wrong type).
        """
        obj = _load_json_object(data, "descriptor")
        missing = [key for key in ("mediaType", "digest", "size") if key not in obj]
        if missing:
            raise ValueError(f"descriptor lacks {', '.join(missing)}")
        return cls(
            media_type=obj["mediaType"],
            digest=obj["digest"],
            size=obj["size"],
            artifact_type=obj.get("artifactType"),
            annotations=obj.get("annotations") or {},
        )

    def to_json(self) -> dict[str, Any]:
        """The descriptor as a JSON object; optional fields only when set."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest}
        out["size"] = self.size
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


#: The OCI empty descriptor: `{}` as `application/vnd.oci.empty.v1+json`.
EMPTY_DESCRIPTOR = Descriptor(OCI_EMPTY, digest_of(EMPTY_JSON), len(EMPTY_JSON))


@dataclass(frozen=True)
class Blob:
    """Content to push as a layer of a referrer, with its media type.

    Example:
        >>> Blob("application/spdx+json", b"{}").descriptor().size
        2
    """

    media_type: str
    data: bytes
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "annotations", _frozen_annotations(self.annotations, "blob"))

    @property
    def digest(self) -> str:
        return digest_of(self.data)

    def descriptor(self) -> Descriptor:
        """The descriptor a manifest uses to reference this blob."""
        return Descriptor(self.media_type, self.digest, len(self.data), None, self.annotations)


def _descriptors(value: Any, where: str) -> tuple[Descriptor, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"{where} is not a list")
    return tuple(Descriptor.from_json(item) for item in value)


@dataclass(frozen=True)
class ImageManifest:
    """An OCI image manifest (or a Docker v2 manifest, which has the same shape).

    Example:
        >>> ImageManifest.from_json(pulled.data).subject  # doctest: +SKIP
    """

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...] = ()
    artifact_type: str | None = None
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "annotations", _frozen_annotations(self.annotations, "manifest"))

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any]) -> ImageManifest:
        """Parse an image manifest.

        Raises:
            ValueError: not an image manifest.
        """
        obj = _load_json_object(data, "manifest")
        if obj.get("schemaVersion") != 2 or "config" not in obj:
            raise ValueError("manifest is not a schemaVersion 2 image manifest with a config")
        subject = obj.get("subject")
        return cls(
            media_type=str(obj.get("mediaType") or OCI_MANIFEST),
            config=Descriptor.from_json(obj["config"]),
            layers=_descriptors(obj.get("layers"), "manifest layers"),
            artifact_type=obj.get("artifactType"),
            subject=Descriptor.from_json(subject) if subject is not None else None,
            annotations=obj.get("annotations") or {},
        )


@dataclass(frozen=True)
class ImageIndex:
    """An OCI image index (also the shape of a referrers list).

    Example:
        >>> ImageIndex.from_json(b'{"schemaVersion":2,"manifests":[]}').manifests
        ()
    """

    media_type: str
    manifests: tuple[Descriptor, ...] = ()
    artifact_type: str | None = None
    subject: Descriptor | None = None
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "annotations", _frozen_annotations(self.annotations, "index"))

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any]) -> ImageIndex:
        """Parse an image index.

        Raises:
            ValueError: not an image index.
        """
        obj = _load_json_object(data, "index")
        if obj.get("schemaVersion") != 2 or not isinstance(obj.get("manifests"), list):
            raise ValueError("index is not a schemaVersion 2 image index with a manifests list")
        subject = obj.get("subject")
        return cls(
            media_type=str(obj.get("mediaType") or OCI_INDEX),
            manifests=_descriptors(obj["manifests"], "index manifests"),
            artifact_type=obj.get("artifactType"),
            subject=Descriptor.from_json(subject) if subject is not None else None,
            annotations=obj.get("annotations") or {},
        )


class PulledManifest(NamedTuple):
    """A manifest as pulled: its exact bytes, media type and verified digest.

    Unpacks as `(data, media_type, digest)`.
    """

    data: bytes
    media_type: str
    digest: str

    def descriptor(self) -> Descriptor:
        """The descriptor that references this manifest (e.g. as a referrer's subject)."""
        return Descriptor(self.media_type, self.digest, len(self.data))

    def json(self) -> Any:
        """The decoded JSON document."""
        return json.loads(self.data)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _media_type(response: requests.Response, body: bytes) -> str:
    header = response.headers.get("Content-Type", "").split(";", 1)[0].strip()
    if header and header not in ("application/json", "application/octet-stream", "text/plain"):
        return header
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("mediaType"), str):
        return str(document["mediaType"])
    return header or "application/octet-stream"


def _file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return f"sha256:{digest.hexdigest()}", size


class OciClient:
    """A client for one registry, e.g. the lab's registry through its fault proxy.

    Not thread-safe (one `requests.Session`): use one client per thread.

    Args:
        base_url: the registry's root, e.g. "http://127.0.0.1:5055" (no `/v2`).
        auth: (username, password) for HTTP Basic auth, also used at a Bearer token realm.
        timeout: seconds to wait to connect and between bytes of a response.
        retries: how many times a failed connection (any method) or a failed GET/HEAD
            (read error, 502/503/504) is retried, with sub-second backoff.

    Raises:
        ValueError: `base_url` is not an http(s) URL, or `timeout`/`retries` are negative.

    Example:
        >>> with OciClient("http://127.0.0.1:5055") as client:  # doctest: +SKIP
        ...     digest = client.push_blob("demo", b"hello")
        ...     assert client.pull_blob("demo", digest) == b"hello"
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: tuple[str, str] | None = None,
        timeout: float = 5.0,
        retries: int = 2,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"registry URL must be http(s)://host[:port], not {_redact(base_url)!r}"
            )
        if timeout <= 0 or retries < 0:
            raise ValueError("timeout must be positive and retries non-negative")
        self.base_url = base_url.rstrip("/")
        self._display_url = _redact(self.base_url)
        self._auth = auth
        self._timeout = timeout
        self._retries = retries
        self._session = build_session(auth, retries)
        self._bearer: BearerAuth | None = None

    def __repr__(self) -> str:
        user = f", user={self._auth[0]!r}" if self._auth is not None else ""
        return f"OciClient({self._display_url!r}{user})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    # -- plumbing --------------------------------------------------------------------------

    def _where(self, repo: str) -> str:
        return f"{self._display_url}/v2/{repo}"

    def _request(
        self,
        method: str,
        target: str,
        *,
        action: str,
        expect: Iterable[int] = (200,),
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: bytes | Path | None = None,
    ) -> requests.Response:
        """One request, answered at most once with a Bearer token; failures as RegistryError.

        `target` is a path under the base URL or an absolute URL (an upload location).
        """
        url = target if "://" in target else f"{self.base_url}{target}"
        expected = tuple(expect)
        response: requests.Response | None = None
        for attempt in (1, 2):
            try:
                if isinstance(body, Path):
                    with body.open("rb") as handle:
                        response = self._send(method, url, headers, params, handle)
                else:
                    response = self._send(method, url, headers, params, body)
            except requests.RequestException as exc:
                problem = describe_connection_error(exc)
                raise RegistryError(f"{problem} while {action}") from exc
            except OSError as exc:  # the file to upload could not be opened
                raise RegistryError(
                    f"cannot read {exc.filename}: {exc.strerror} while {action}"
                ) from exc
            _logger.debug("%s %s -> %s", method, _redact(url), response.status_code)
            if (
                response.status_code == 401
                and attempt == 1
                and self._answer_challenge(response, action)
            ):
                continue
            break
        assert response is not None
        if response.status_code not in expected:
            detail = error_detail(response)
            if response.status_code == 401:
                who = (
                    f"credentials of {self._auth[0]!r} refused" if self._auth else "no credentials"
                )
                detail = f"{detail}, {who},"
            raise RegistryError(f"{detail} while {action}")
        return response

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
        data: Any,
    ) -> requests.Response:
        return self._session.request(
            method,
            url,
            headers=dict(headers or {}),
            params=dict(params or {}),
            data=data,
            auth=self._bearer,
            timeout=(self._timeout, self._timeout),
        )

    def _answer_challenge(self, response: requests.Response, action: str) -> bool:
        challenge = bearer_challenge(response)
        if challenge is None:
            return False
        try:
            token = fetch_token(self._session, challenge, self._auth, self._timeout)
        except requests.RequestException as exc:
            problem = describe_connection_error(exc)
            raise RegistryError(
                f"{problem} at token realm {_redact(challenge['realm'])} while {action}"
            ) from exc
        except ValueError as exc:
            raise RegistryError(f"{exc} while {action}") from exc
        _logger.debug("got a registry token for scope %s", challenge.get("scope", "(none)"))
        self._bearer = BearerAuth(token)
        return True

    # -- public API ------------------------------------------------------------------------

    def ping(self) -> None:
        """Check that the registry answers `GET /v2/` with 200 (and accepts the credentials).

        Raises:
            RegistryError: it does not.

        Example:
            >>> client.ping()  # doctest: +SKIP
        """
        self._request("GET", "/v2/", action=f"checking the registry API at {self._display_url}/v2/")

    def blob_exists(self, repo: str, digest: str) -> bool:
        """Whether the registry has the blob in `repo` (`HEAD`).

        Raises:
            ValueError: `repo` or `digest` is malformed.
            RegistryError: the registry answered neither 200 nor 404, or could not be reached.

        Example:
            >>> client.blob_exists("demo", digest_of(b"{}"))  # doctest: +SKIP
            True
        """
        _check_repo(repo)
        _split_digest(digest)
        return self._blob_exists(repo, digest, f"checking for blob {digest} in {self._where(repo)}")

    def _blob_exists(self, repo: str, digest: str, action: str) -> bool:
        response = self._request(
            "HEAD", f"/v2/{repo}/blobs/{digest}", action=action, expect=(200, 404)
        )
        return response.status_code == 200

    def push_blob(self, repo: str, data: bytes | str | os.PathLike[str]) -> str:
        """Upload a blob unless the registry has it; return its digest.

        `HEAD` first; otherwise a monolithic upload (`POST` then `PUT ?digest=`), and the
        `Docker-Content-Digest` the registry answers must match.

        Args:
            repo: repository name, e.g. "demo" or "team/app".
            data: the bytes, or the path of a file (streamed, any folder).

        Raises:
            ValueError: `repo` is malformed.
            RegistryError: the file cannot be read, the registry refused or could not be reached
                (e.g. "connection reset by peer while uploading blob sha256:… to
                http://127.0.0.1:5055/v2/demo (sending 1048576 bytes)"), or it stored a
                different digest.

        Example:
            >>> client.push_blob("demo", b"hello")  # doctest: +SKIP
            'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824'
        """
        _check_repo(repo)
        body: bytes | Path
        if isinstance(data, bytes | bytearray | memoryview):
            body = bytes(data)
            digest, size = digest_of(body), len(body)
        else:
            body = Path(data)
            try:
                digest, size = _file_digest(body)
            except OSError as exc:
                raise RegistryError(
                    f"cannot read {body}: {exc.strerror} (blob for {self._where(repo)})"
                ) from exc
        action = f"uploading blob {digest} to {self._where(repo)}"
        if self._blob_exists(repo, digest, f"{action} (checking whether it exists)"):
            _logger.debug("blob %s already in %s", digest, self._where(repo))
            return digest
        started = self._request(
            "POST",
            f"/v2/{repo}/blobs/uploads/",
            action=f"{action} (starting the upload)",
            expect=(202,),
        )
        location = started.headers.get("Location")
        if not location:
            raise RegistryError(f"no upload Location in the answer while {action}")
        finished = self._request(
            "PUT",
            urljoin(started.url, location),
            action=f"{action} (sending {size} bytes)",
            expect=(201,),
            headers={"Content-Type": "application/octet-stream"},
            params={"digest": digest},
            body=body,
        )
        stored = finished.headers.get("Docker-Content-Digest")
        if stored is not None and stored != digest:
            raise RegistryError(
                f"the registry stored {stored}, not the pushed digest, while {action}"
            )
        _logger.info("pushed blob %s (%d bytes) to %s", digest, size, self._where(repo))
        return digest

    def pull_blob(self, repo: str, digest: str) -> bytes:
        """Download a blob and check that its bytes have the requested digest.

        Raises:
            ValueError: `repo` or `digest` is malformed.
            RegistryError: the registry refused or could not be reached, or the bytes it sent
                have another digest.

        Example:
            >>> client.pull_blob("demo", digest_of(b"{}"))  # doctest: +SKIP
            b'{}'
        """
        _check_repo(repo)
        algorithm, _ = _split_digest(digest)
        action = f"pulling blob {digest} from {self._where(repo)}"
        response = self._request("GET", f"/v2/{repo}/blobs/{digest}", action=action)
        content = response.content
        got = digest_of(content, algorithm) if algorithm in _HEX_LENGTH else None
        if got != digest:
            raise RegistryError(
                f"content digest {got or 'unverifiable'} does not match "
                f"({len(content)} bytes) while {action}"
            )
        return content

    def push_manifest(
        self,
        repo: str,
        manifest: bytes,
        media_type: str,
        *,
        reference: str | None = None,
    ) -> str:
        """Push a manifest's exact bytes; return their sha256 digest.

        By default it is pushed by digest (`PUT /v2/<repo>/manifests/sha256:…`), so no tag is
        created or moved; give a tag as `reference` to push it under that tag instead.

        Args:
            repo: repository name.
            manifest: the manifest's bytes, sent as given (never re-serialized).
            media_type: its media type, sent as Content-Type.
            reference: a tag, or the manifest's own digest; default its digest.

        Raises:
            TypeError: `manifest` is not bytes.
            ValueError: `repo` or `reference` is malformed, or `reference` is another digest.
            RegistryError: the registry refused (e.g. a referenced blob is missing) or could not
                be reached, or it answered another digest.

        Example:
            >>> client.push_manifest("demo", manifest_bytes, OCI_MANIFEST)  # doctest: +SKIP
        """
        digest, _ = self._put_manifest(repo, manifest, media_type, reference)
        return digest

    def _put_manifest(
        self, repo: str, manifest: bytes, media_type: str, reference: str | None
    ) -> tuple[str, requests.Response]:
        if not isinstance(manifest, bytes):
            raise TypeError(f"manifest must be bytes, not {type(manifest).__name__}")
        _check_repo(repo)
        digest = digest_of(manifest)
        target = reference or digest
        _check_reference(target)
        if _is_digest(target) and target != digest:
            raise ValueError(f"reference {target} is not the manifest's digest {digest}")
        action = f"pushing manifest {target} to {self._where(repo)}"
        response = self._request(
            "PUT",
            f"/v2/{repo}/manifests/{target}",
            action=action,
            expect=(201,),
            headers={"Content-Type": media_type},
            body=manifest,
        )
        stored = response.headers.get("Docker-Content-Digest")
        if stored is not None and stored != digest:
            raise RegistryError(f"the registry stored {stored}, not {digest}, while {action}")
        _logger.info("pushed manifest %s as %s to %s", digest, target, self._where(repo))
        return digest, response

    def pull_manifest(
        self,
        repo: str,
        reference: str,
        accept: str | Sequence[str] = DEFAULT_MANIFEST_ACCEPT,
    ) -> PulledManifest:
        """Pull a manifest by tag or digest; return `(bytes, media_type, digest)`.

        Pulled by digest, the bytes must have that digest; pulled by tag, the digest is the
        sha256 of the bytes and must match the registry's `Docker-Content-Digest` if sent.

        Args:
            repo: repository name.
            reference: a tag or a digest.
            accept: media type(s) to accept; default OCI and Docker manifests and indexes.

        Raises:
            ValueError: `repo` or `reference` is malformed.
            RegistryError: not found, refused, unreachable, or the digest does not match.

        Example:
            >>> data, media_type, digest = client.pull_manifest("demo", "v1")  # doctest: +SKIP
        """
        _check_repo(repo)
        _check_reference(reference)
        action = f"pulling manifest {reference} from {self._where(repo)}"
        wanted = [accept] if isinstance(accept, str) else list(accept)
        response = self._request(
            "GET",
            f"/v2/{repo}/manifests/{reference}",
            action=action,
            headers={"Accept": ", ".join(wanted)},
        )
        content = response.content
        stated = response.headers.get("Docker-Content-Digest")
        if _is_digest(reference):
            algorithm, _ = _split_digest(reference)
            got = digest_of(content, algorithm) if algorithm in _HEX_LENGTH else None
            if got != reference:
                raise RegistryError(
                    f"content digest {got or 'unverifiable'} does not match while {action}"
                )
            digest = reference
        else:
            digest = digest_of(content)
            if stated is not None and stated.startswith("sha256:") and stated != digest:
                raise RegistryError(
                    f"content digest {digest} differs from the registry's {stated} while {action}"
                )
        return PulledManifest(content, _media_type(response, content), digest)

    def resolve(self, repo: str, reference: str) -> Descriptor:
        """The descriptor of a manifest (`HEAD`): media type, digest and size.

        Raises:
            ValueError: `repo` or `reference` is malformed.
            RegistryError: not found, refused or unreachable.

        Example:
            >>> client.resolve("demo", "v1").digest  # doctest: +SKIP
        """
        _check_repo(repo)
        _check_reference(reference)
        action = f"resolving manifest {reference} in {self._where(repo)}"
        response = self._request(
            "HEAD",
            f"/v2/{repo}/manifests/{reference}",
            action=action,
            headers={"Accept": ", ".join(DEFAULT_MANIFEST_ACCEPT)},
        )
        digest = response.headers.get("Docker-Content-Digest")
        if digest is None and _is_digest(reference):
            digest = reference
        try:
            return Descriptor(
                response.headers.get("Content-Type", "").split(";", 1)[0].strip(),
                digest or "",
                int(response.headers.get("Content-Length", "-1")),
            )
        except ValueError as exc:
            raise RegistryError(f"incomplete answer ({exc}) while {action}") from exc

    def tag(self, repo: str, digest: str, tag: str) -> None:
        """Point `tag` at the manifest `digest` (pull its exact bytes, push them by tag).

        Raises:
            ValueError: `repo`, `digest` or `tag` is malformed.
            RegistryError: the manifest is missing, or the registry refused or is unreachable.

        Example:
            >>> client.tag("demo", digest, "v1")  # doctest: +SKIP
        """
        _split_digest(digest)
        if _is_digest(tag) or _TAG.match(tag) is None:
            raise ValueError(f"not a tag: {tag!r}")
        pulled = self.pull_manifest(repo, digest)
        self._put_manifest(repo, pulled.data, pulled.media_type, tag)

    def attach_referrer(
        self,
        repo: str,
        subject_digest: str,
        subject_media_type: str,
        subject_size: int,
        artifact_type: str,
        layers: Sequence[Blob | Descriptor] = (),
        annotations: Mapping[str, str] | None = None,
    ) -> str:
        """Attach an artifact to a subject manifest as an OCI 1.1 referrer; return its digest.

        Pushes the empty config blob and each `Blob` layer (`Descriptor` layers must already be
        in `repo`), then an image manifest with `artifactType`, `config` = the empty descriptor,
        `layers` (the empty descriptor when none are given) and `subject`, by digest. If the
        registry does not answer with `OCI-Subject`, the referrer is added to the tag-schema
        index `sha256-<hex>` of the subject (read, add unless present, write back). That
        read-modify-write is not atomic: two clients attaching to the same subject at the same
        moment can lose one entry.

        Args:
            repo: repository of the subject and the referrer.
            subject_digest, subject_media_type, subject_size: the subject's descriptor.
            artifact_type: the referrer's artifact type, e.g. "application/spdx+json".
            layers: the artifact's content.
            annotations: the referrer manifest's annotations (also copied into the index).

        Raises:
            ValueError: a name, digest or size is malformed.
            RegistryError: a push failed, or the tag `sha256-<hex>` holds something other than
                an OCI image index.

        Example:
            >>> client.attach_referrer(  # doctest: +SKIP
            ...     "demo", subject.digest, subject.media_type, subject.size,
            ...     "application/vnd.cyclonedx+json",
            ...     [Blob("application/vnd.cyclonedx+json", sbom)],
            ... )
        """
        _check_repo(repo)
        subject = Descriptor(subject_media_type, subject_digest, subject_size)
        if not isinstance(artifact_type, str) or not artifact_type:
            raise ValueError("artifact_type must be a non-empty media type")
        manifest_annotations = _frozen_annotations(annotations, "referrer")
        self.push_blob(repo, EMPTY_JSON)
        descriptors: list[Descriptor] = []
        for layer in layers:
            if isinstance(layer, Blob):
                self.push_blob(repo, layer.data)
                descriptors.append(layer.descriptor())
            else:
                descriptors.append(layer)
        if not descriptors:
            descriptors.append(EMPTY_DESCRIPTOR)
        document: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": EMPTY_DESCRIPTOR.to_json(),
            "layers": [descriptor.to_json() for descriptor in descriptors],
            "subject": subject.to_json(),
        }
        if manifest_annotations:
            document["annotations"] = dict(manifest_annotations)
        data = _canonical_bytes(document)
        digest, response = self._put_manifest(repo, data, OCI_MANIFEST, None)
        if response.headers.get("OCI-Subject"):
            _logger.debug("registry tracks referrers of %s itself", subject_digest)
            return digest
        referrer = Descriptor(OCI_MANIFEST, digest, len(data), artifact_type, manifest_annotations)
        self._add_to_referrers_tag(repo, subject_digest, referrer)
        return digest

    def _add_to_referrers_tag(self, repo: str, subject_digest: str, referrer: Descriptor) -> None:
        tag = referrers_tag(subject_digest)
        action = f"updating referrers index {tag} in {self._where(repo)}"
        response = self._request(
            "GET",
            f"/v2/{repo}/manifests/{tag}",
            action=action,
            expect=(200, 404),
            headers={"Accept": OCI_INDEX},
        )
        if response.status_code == 404:
            index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        else:
            index = self._parse_referrers_index(response, action)
        manifests: list[Any] = index["manifests"]
        if any(isinstance(e, dict) and e.get("digest") == referrer.digest for e in manifests):
            _logger.debug("referrer %s already in %s", referrer.digest, tag)
            return
        manifests.append(referrer.to_json())
        self._put_manifest(repo, _canonical_bytes(index), OCI_INDEX, tag)

    @staticmethod
    def _parse_referrers_index(response: requests.Response, action: str) -> dict[str, Any]:
        media_type = _media_type(response, response.content)
        if media_type != OCI_INDEX:
            raise RegistryError(
                f"the tag holds {media_type}, not an OCI image index, while {action}"
            )
        try:
            index = json.loads(response.content)
            ImageIndex.from_json(index)
        except ValueError as exc:
            raise RegistryError(f"malformed referrers index ({exc}) while {action}") from exc
        if not isinstance(index, dict):
            raise RegistryError(f"malformed referrers index while {action}")
        return index

    def list_referrers(
        self, repo: str, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor]:
        """The referrers of a manifest, optionally only those of one artifact type.

        Tries the referrers API (`GET /v2/<repo>/referrers/<digest>?artifactType=…`, following
        `Link: rel="next"` pages); on 404 reads the tag-schema index `sha256-<hex>` instead
        (no such tag: no referrers). The filter is applied here when the registry did not
        list `artifactType` in `OCI-Filters-Applied`.

        Raises:
            ValueError: `repo` or `digest` is malformed.
            RegistryError: the registry refused or is unreachable, or sent a malformed list.

        Example:
            >>> client.list_referrers("demo", subject.digest, "application/spdx+json")
            ... # doctest: +SKIP
            [Descriptor(media_type='application/vnd.oci.image.manifest.v1+json', ...)]
        """
        _check_repo(repo)
        _split_digest(digest)
        action = f"listing referrers of {digest} in {self._where(repo)}"
        params = {"artifactType": artifact_type} if artifact_type is not None else None
        response = self._request(
            "GET",
            f"/v2/{repo}/referrers/{digest}",
            action=action,
            expect=(200, 404),
            headers={"Accept": OCI_INDEX},
            params=params,
        )
        if response.status_code == 200:
            found, filtered = self._referrers_pages(response, action)
        else:
            _logger.debug(
                "no referrers API at %s; reading tag %s", self._display_url, referrers_tag(digest)
            )
            found, filtered = self._referrers_from_tag(repo, digest), False
        if artifact_type is not None and not filtered:
            found = [d for d in found if d.artifact_type == artifact_type]
        return found

    def _referrers_pages(
        self, response: requests.Response, action: str
    ) -> tuple[list[Descriptor], bool]:
        applied = response.headers.get("OCI-Filters-Applied", "")
        filtered = "artifactType" in [item.strip() for item in applied.split(",")]
        found = self._index_entries(response, action)
        for _ in range(_MAX_REFERRER_PAGES):
            link = response.links.get("next", {}).get("url")
            if not link:
                break
            response = self._request(
                "GET", urljoin(response.url, link), action=action, headers={"Accept": OCI_INDEX}
            )
            found.extend(self._index_entries(response, action))
        return found, filtered

    def _referrers_from_tag(self, repo: str, digest: str) -> list[Descriptor]:
        tag = referrers_tag(digest)
        action = f"reading referrers index {tag} in {self._where(repo)}"
        response = self._request(
            "GET",
            f"/v2/{repo}/manifests/{tag}",
            action=action,
            expect=(200, 404),
            headers={"Accept": OCI_INDEX},
        )
        if response.status_code == 404:
            return []
        return self._index_entries(response, action)

    @staticmethod
    def _index_entries(response: requests.Response, action: str) -> list[Descriptor]:
        try:
            return list(ImageIndex.from_json(response.content).manifests)
        except ValueError as exc:
            raise RegistryError(f"malformed referrers list ({exc}) while {action}") from exc
