"""The `tsa` role: an RFC 3161 timestamp authority built on Debian's `openssl ts -reply`.

`python3 -m sigstack tsa --host 0.0.0.0 --port 3004 --config /etc/cihub/sigstack/tsa.json`

Routes (the paths of sigstore/timestamp-authority, which sigstore-python's signing config
`tsaUrls` point at):

- `POST /api/v1/timestamp`: a DER `TimeStampReq` (`application/timestamp-query`) in, a DER
  `TimeStampResp` (`application/timestamp-reply`) out. The request is parsed and checked here
  first (version 1, SHA-256/384/512 imprint of the right length, optional policy, nonce,
  certReq, no extensions): a malformed one gets 400 with a reason and never reaches openssl.
  openssl echoes the nonce and includes the signer certificate only when `certReq` is set.
  A request openssl refuses (e.g. an unknown policy) gets 400 with openssl's DER
  `TimeStampResp` carrying the rejection.
- `GET /api/v1/timestamp/certchain`: the PEM chain, signer first.
- `GET /healthz`.

The openssl config is written once at start into the work folder; each request runs
`openssl ts -reply` in its own temporary folder with a fresh random serial number file
(`$ENV::CIHUB_TSA_SERIAL`), so requests run in parallel without sharing state.

Config file (JSON; relative paths are resolved against the config file's folder):

    {"signer_key": "tsa-key.pem",     # the signer's private key
     "chain": "tsa-chain.pem",        # PEM: signer (critical EKU timeStamping), then to root
     "policy": "1.3.6.1.4.1.57264.2", # default TSA policy OID
     "openssl": "openssl",            # the binary
     "work_dir": null}                # for the openssl config (default: a temp folder,
                                      # removed when the authority is garbage-collected)
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from .configfile import read_json
from .http import (
    Handler,
    HttpError,
    Request,
    Response,
    Server,
    json_response,
    serve_until_signal,
    text_response,
)
from .x509util import (
    TAG_BOOLEAN,
    TAG_INTEGER,
    TAG_NULL,
    TAG_OCTET_STRING,
    TAG_OID,
    TAG_SEQUENCE,
    Der,
    DerError,
    certificates_pem,
    der_tlv,
    load_certificates,
    load_private_key,
    parse_der,
    spki_der,
)

_logger = logging.getLogger(__name__)

ROLE = "tsa"
DEFAULT_PORT = 3004
DEFAULT_CONFIG = "/etc/cihub/sigstack/tsa.json"
DEFAULT_POLICY = "1.3.6.1.4.1.57264.2"
QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
OPENSSL_TIMEOUT = 15.0

HASH_OIDS = {
    "2.16.840.1.101.3.4.2.1": ("sha256", 32),
    "2.16.840.1.101.3.4.2.2": ("sha384", 48),
    "2.16.840.1.101.3.4.2.3": ("sha512", 64),
}
_SAFE_CONFIG_CHAR = re.compile(r"[A-Za-z0-9_./:+@%,-]")


class TsaError(HttpError):
    """A refused timestamp request; answered as `{"code": status, "message": reason}`."""


@dataclass(frozen=True)
class TsaConfig:
    """What the role needs, as read from its JSON config file."""

    signer_key: Path
    chain: Path
    policy: str = DEFAULT_POLICY
    openssl: str = "openssl"
    work_dir: Path | None = None

    @classmethod
    def from_file(cls, path: Path) -> TsaConfig:
        """Read a config file; relative paths are taken from the file's folder.

        Raises:
            OSError: the file can't be read.
            ValueError: it is not JSON or misses a field (the message names it).
        """
        return cls.from_json(read_json(path), base=path.parent, source=str(path))

    @classmethod
    def from_json(cls, raw: Any, *, base: Path, source: str = "config") -> TsaConfig:
        """Build from parsed JSON; see the module docstring for the fields.

        Raises:
            ValueError: a missing or mistyped field (the message names it).
        """
        if not isinstance(raw, dict):
            raise ValueError(f"{source}: must be a JSON object")
        for name in ("signer_key", "chain"):
            if not isinstance(raw.get(name), str) or not raw[name]:
                raise ValueError(f"{source}: {name} must be a non-empty string path")
        for name in ("policy", "openssl"):
            if name in raw and (not isinstance(raw[name], str) or not raw[name]):
                raise ValueError(f"{source}: {name} must be a non-empty string")
        policy = raw.get("policy", DEFAULT_POLICY)
        if not re.fullmatch(r"[0-2](\.[0-9]+)+", policy):
            raise ValueError(f"{source}: policy must be a dotted OID")
        work_dir = raw.get("work_dir")
        if work_dir is not None and not isinstance(work_dir, str):
            raise ValueError(f"{source}: work_dir must be a string path or null")
        return cls(
            signer_key=base / raw["signer_key"],
            chain=base / raw["chain"],
            policy=policy,
            openssl=raw.get("openssl", "openssl"),
            work_dir=None if work_dir is None else base / work_dir,
        )


@dataclass(frozen=True)
class TimestampRequest:
    """The fields of a checked RFC 3161 `TimeStampReq`."""

    hash_name: str
    digest: bytes
    policy: str | None
    nonce: int | None
    cert_req: bool


def _req_error(reason: str) -> TsaError:
    return TsaError(400, f"error parsing timestamp request: {reason}")


def parse_request(der: bytes) -> TimestampRequest:
    """Check a DER `TimeStampReq` (RFC 3161 section 2.4.1) and return its fields.

    Raises:
        TsaError: 400 naming what is wrong.
    """
    if not der:
        raise _req_error("empty body")
    try:
        top = parse_der(der)
        if top.tag != TAG_SEQUENCE:
            raise _req_error("not a SEQUENCE")
        items = top.children()
        if len(items) < 2:
            raise _req_error("missing version or messageImprint")
        if items[0].as_int() != 1:
            raise _req_error("version must be 1")
        imprint = items[1]
        if imprint.tag != TAG_SEQUENCE:
            raise _req_error("messageImprint is not a SEQUENCE")
        algorithm, hashed = _imprint_parts(imprint)
        policy: str | None = None
        nonce: int | None = None
        cert_req = False
        rest = items[2:]
        if rest and rest[0].tag == TAG_OID:
            policy = rest.pop(0).as_oid()
        if rest and rest[0].tag == TAG_INTEGER:
            nonce = rest.pop(0).as_int()
            if nonce < 0:
                raise _req_error("nonce must not be negative")
        if rest and rest[0].tag == TAG_BOOLEAN:
            cert_req = rest.pop(0).as_bool()
        if rest and rest[0].tag == 0xA0:
            raise _req_error("request extensions are not supported")
        if rest:
            raise _req_error(f"unexpected element with tag 0x{rest[0].tag:02x}")
    except DerError as exc:
        raise _req_error(str(exc)) from exc
    if algorithm not in HASH_OIDS:
        raise _req_error(f"unsupported hash algorithm {algorithm}")
    name, size = HASH_OIDS[algorithm]
    if len(hashed) != size:
        raise _req_error(f"{name} digest must be {size} bytes, got {len(hashed)}")
    return TimestampRequest(name, hashed, policy, nonce, cert_req)


def _imprint_parts(imprint: Der) -> tuple[str, bytes]:
    parts = imprint.children()
    if len(parts) != 2 or parts[0].tag != TAG_SEQUENCE or parts[1].tag != TAG_OCTET_STRING:
        raise _req_error("messageImprint must be (AlgorithmIdentifier, OCTET STRING)")
    algorithm = parts[0].children()
    if not algorithm or len(algorithm) > 2:
        raise _req_error("bad hashAlgorithm")
    if len(algorithm) == 2 and algorithm[1].tag != TAG_NULL:
        raise _req_error("hashAlgorithm parameters must be absent or NULL")
    return algorithm[0].as_oid(), parts[1].content


def response_status(der: bytes) -> tuple[int, str]:
    """The PKIStatus of a DER `TimeStampResp` and its status text (may be empty).

    Raises:
        DerError: not a TimeStampResp.
    """
    top = parse_der(der)
    if top.tag != TAG_SEQUENCE:
        raise DerError("TimeStampResp is not a SEQUENCE")
    status_info = top.children()[0]
    fields = status_info.children()
    status = fields[0].as_int()
    texts: list[str] = []
    if len(fields) > 1 and fields[1].tag == TAG_SEQUENCE:
        texts = [item.content.decode("utf-8", "replace") for item in fields[1].children()]
    return status, "; ".join(texts)


def _config_value(value: str) -> str:
    # openssl's config reader treats a backslash as an escape for the next character.
    return "".join(c if _SAFE_CONFIG_CHAR.fullmatch(c) else "\\" + c for c in value)


def _has_critical_timestamping(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return False
    return eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]


class TimestampAuthority:
    """Answers timestamp requests with `openssl ts -reply`.

    Example:
        tsa = TimestampAuthority(TsaConfig.from_file(Path("tsa.json")))
        reply = tsa.timestamp(request_der)
    """

    def __init__(self, config: TsaConfig) -> None:
        self.config = config
        self.chain = load_certificates(config.chain)
        signer = self.chain[0]
        if not _has_critical_timestamping(signer):
            raise ValueError(
                f"{config.chain}: the signer needs a critical EKU of exactly timeStamping"
            )
        key = load_private_key(config.signer_key)
        if spki_der(key.public_key()) != spki_der(signer.public_key()):
            raise ValueError(f"{config.signer_key}: the key does not match the signer certificate")
        if config.work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="cihub-tsa-"))
            weakref.finalize(self, shutil.rmtree, self.work_dir, True)
        else:
            self.work_dir = config.work_dir
            self.work_dir.mkdir(parents=True, exist_ok=True)
        signer_pem = self.work_dir / "signer.pem"
        signer_pem.write_text(certificates_pem([signer]), encoding="ascii")
        self.config_path = self.work_dir / "openssl-tsa.cnf"
        self.config_path.write_text(self._openssl_config(signer_pem), encoding="utf-8")
        self.issued = 0
        self._lock = threading.Lock()

    def _openssl_config(self, signer_pem: Path) -> str:
        # No `certs =`: openssl writes extra certificates in file order, which breaks the DER
        # ordering of SignedData's `SET OF certificates` that rfc3161-client enforces. With
        # certReq the signer certificate alone goes in (all RFC 3161 asks for); the chain is
        # served at /api/v1/timestamp/certchain and listed in the trusted root.
        lines = [
            "# Written by the cihub lab's sigstack tsa role. LAB ONLY - NOT FOR PRODUCTION.",
            "[ tsa ]",
            "default_tsa = tsa_config",
            "",
            "[ tsa_config ]",
            "serial = $ENV::CIHUB_TSA_SERIAL",
            "crypto_device = builtin",
            f"signer_cert = {_config_value(str(signer_pem))}",
            f"signer_key = {_config_value(str(self.config.signer_key))}",
            "signer_digest = sha256",
            f"default_policy = {self.config.policy}",
            "digests = sha256, sha384, sha512",
            "accuracy = secs:1",
            "ordering = no",
            "tsa_name = no",
            "ess_cert_id_chain = no",
            "ess_cert_id_alg = sha256",
        ]
        return "\n".join(lines) + "\n"

    def chain_pem(self) -> str:
        """The PEM chain, signer first."""
        return certificates_pem(self.chain)

    def timestamp(self, request_der: bytes) -> tuple[int, bytes]:
        """Check a request and let openssl answer it.

        Returns:
            The PKIStatus (0 granted, 1 granted with modifications, 2+ refused) and the DER
            `TimeStampResp`.

        Raises:
            TsaError: 400 for a malformed request, 500 if openssl fails.
        """
        request = parse_request(request_der)
        with tempfile.TemporaryDirectory(dir=self.work_dir, prefix="req-") as scratch:
            folder = Path(scratch)
            query = folder / "request.tsq"
            query.write_bytes(request_der)
            serial = folder / "serial"
            serial.write_text(f"{secrets.randbits(63) | 1:016X}\n", encoding="ascii")
            reply = folder / "reply.tsr"
            command = [
                self.config.openssl,
                "ts",
                "-reply",
                "-config",
                str(self.config_path),
                "-queryfile",
                str(query),
                "-out",
                str(reply),
            ]
            try:
                done = subprocess.run(
                    command,
                    capture_output=True,
                    timeout=OPENSSL_TIMEOUT,
                    env={**os.environ, "CIHUB_TSA_SERIAL": str(serial)},
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise TsaError(500, f"openssl ts -reply failed: {exc}") from exc
            if done.returncode != 0 or not reply.exists():
                detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
                raise TsaError(500, f"openssl ts -reply failed: {' '.join(detail[-3:])}")
            answer = reply.read_bytes()
        try:
            status, text = response_status(answer)
        except (DerError, IndexError) as exc:
            raise TsaError(500, f"openssl wrote an unreadable TimeStampResp: {exc}") from exc
        if status in (0, 1):
            with self._lock:
                self.issued += 1
        else:
            _logger.info("openssl refused a %s request: %s", request.hash_name, text)
        return status, answer


_JSON_HASHES = {name: oid for oid, (name, _) in HASH_OIDS.items()}


def _der_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    if len(parts) < 2 or parts[0] > 2 or any(p < 0 for p in parts):
        raise ValueError(f"{dotted!r} is not an OID")
    body = bytearray()
    for arc in [parts[0] * 40 + parts[1], *parts[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return der_tlv(TAG_OID, bytes(body))


def _der_int(value: int) -> bytes:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big")  # a leading 0 keeps it positive
    while len(raw) > 1 and raw[0] == 0 and raw[1] < 0x80:
        raw = raw[1:]
    return der_tlv(TAG_INTEGER, raw)


def json_request_der(body: bytes) -> bytes:
    """The DER TimeStampReq of a timestamp-authority JSON request: {artifactHash (base64),
    hashAlgorithm ("sha256"...), nonce, certificates, tsaPolicyOID}, as upstream takes it.

    Raises:
        TsaError: 400 naming the field that is missing or malformed.
    """
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise TsaError(400, f"request body is not JSON: {exc}") from exc
    if not isinstance(request, dict):
        raise TsaError(400, "JSON request must be an object")
    algorithm = request.get("hashAlgorithm", "sha256")
    if algorithm not in _JSON_HASHES:
        raise TsaError(400, f"hashAlgorithm {algorithm!r} is not sha256, sha384 or sha512")
    try:
        digest = base64.b64decode(str(request.get("artifactHash", "")), validate=True)
    except (ValueError, binascii.Error) as exc:
        raise TsaError(400, "artifactHash is not base64") from exc
    if not digest:
        raise TsaError(400, "artifactHash is required")
    nonce = request.get("nonce")
    if nonce is not None and (not isinstance(nonce, int) or isinstance(nonce, bool) or nonce < 0):
        raise TsaError(400, "nonce must be a non-negative integer")
    policy = request.get("tsaPolicyOID")
    parts = [der_tlv(TAG_INTEGER, b"\x01")]
    algorithm_id = der_tlv(TAG_SEQUENCE, _der_oid(_JSON_HASHES[algorithm]) + der_tlv(TAG_NULL, b""))
    parts.append(der_tlv(TAG_SEQUENCE, algorithm_id + der_tlv(TAG_OCTET_STRING, digest)))
    if policy:
        try:
            parts.append(_der_oid(str(policy)))
        except ValueError as exc:
            raise TsaError(400, f"tsaPolicyOID: {exc}") from exc
    if nonce is not None:
        parts.append(_der_int(nonce))
    if request.get("certificates"):
        parts.append(der_tlv(TAG_BOOLEAN, b"\xff"))
    return der_tlv(TAG_SEQUENCE, b"".join(parts))


def make_handler(tsa: TimestampAuthority) -> Handler:
    """The role's HTTP routes over one TSA, for `http.Server`."""

    def handle(request: Request) -> Response:
        if request.path == "/api/v1/timestamp":
            if request.method != "POST":
                raise TsaError(405, "method not allowed; POST a DER TimeStampReq")
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            body = request.body
            if content_type == "application/json":
                body = json_request_der(request.body)
            status, answer = tsa.timestamp(body)
            return Response(200 if status in (0, 1) else 400, answer, REPLY_TYPE)
        if request.path in ("/api/v1/timestamp/certchain", "/healthz"):
            if request.method not in ("GET", "HEAD"):
                raise TsaError(405, "method not allowed")
            if request.path == "/healthz":
                return json_response({"status": "ok", "role": ROLE, "issued": tsa.issued})
            return text_response(tsa.chain_pem(), content_type="application/pem-certificate-chain")
        raise TsaError(404, f"path {request.path} was not found")

    return handle


def make_server(
    tsa: TimestampAuthority, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, log: bool = True
) -> Server:
    """The role's HTTP server (port 0 picks a free one); `start()` it or `serve_until_signal`.

    Example:
        server = make_server(tsa, "127.0.0.1", 0).start()
        ... requests.post(server.url + "/api/v1/timestamp", data=query) ...
        server.stop()
    """
    return Server(make_handler(tsa), host, port, name=ROLE, log=log)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the role: `tsa [--host H] [--port P] [--config FILE]`.

    Returns 0 after SIGTERM/SIGINT, 2 for a bad config file.
    """
    parser = argparse.ArgumentParser(prog=f"sigstack {ROLE}", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--config", type=Path, default=Path(DEFAULT_CONFIG))
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format=ROLE + " %(message)s")
    try:
        tsa = TimestampAuthority(TsaConfig.from_file(args.config))
    except (OSError, ValueError) as exc:
        print(f"sigstack {ROLE}: {exc}", file=sys.stderr)
        return 2
    server = make_server(tsa, args.host, args.port)
    server.log(f"signing as {tsa.chain[0].subject.rfc4514_string()}")
    return serve_until_signal(server, lambda: server.log(f"issued {tsa.issued} timestamps"))
