"""The lab's Sigstore stack: one image (`lab/services/sigstack`), three containers.

Each role gets its own folder of keys and config from `LabTrustMaterial.write_service_files`,
copied to `/etc/cihub/sigstack/<role>/` before the container starts; private keys never go
through the image or the environment.
"""

from __future__ import annotations

from pathlib import Path

from lab.containers.base import Hardening, LabContainer

CONFIG_ROOT = "/etc/cihub/sigstack"
REKOR_PORT = 3000
FULCIO_PORT = 5555
TSA_PORT = 3004
REKOR_DATA = "/var/lib/rekor"


class SigstackContainer(LabContainer):
    """One role of the stack: `python3 -m sigstack <role> ...` with its files copied in.

    Hardened as every lab service (`lab.containers.base.Hardening`): nobody, read-only, its
    role folder on a volume that takes the copied files; its port published on 127.0.0.1 for
    the fault proxy (on the host network) to reach.
    """

    hardening = Hardening(pids_limit=128, mem_limit="256m", writable=(CONFIG_ROOT,))
    port = 0

    def with_role_files(self, folder: Path) -> SigstackContainer:
        """Copy the role's key and config folder to `/etc/cihub/sigstack/<folder name>/`."""
        self.with_copy_into_container(folder, CONFIG_ROOT)
        return self

    def _configure_service(self) -> None:
        self.with_published_port(self.port)
        self.with_http_health(self.port, "/healthz")


class RekorContainer(SigstackContainer):
    """The transparency logs (Rekor v1 and v2, separate databases) of a trust domain.

    The trust domain's `logs/` folder is bind-mounted at /var/lib/rekor, so every lab of the
    domain appends to the same logs (serialized by SQLite) and they outlive the lab.
    """

    service = "rekor"
    port = REKOR_PORT

    def with_logs(self, folder: Path, user: str) -> RekorContainer:
        """Serve the logs in the host `folder`, running as `user` ("uid:gid") who owns it.

        Its copied keys are owned by that user too: with every capability dropped, no other
        user in the container could read a 0600 key.
        """
        self.with_volume_mapping(str(folder), REKOR_DATA, "rw")
        self.with_docker_kwarg("user", user)
        self._log_user = user
        return self

    def _file_owner(self) -> str:
        return getattr(self, "_log_user", None) or self.hardening.user

    def with_names(self, v1_name: str, v2_origin: str) -> RekorContainer:
        """Sign v1 checkpoints under `v1_name` and v2 ones with origin `v2_origin`: the host
        names of the logs' base URLs in the trusted root."""
        folder = f"{CONFIG_ROOT}/rekor"
        self.with_command(
            [
                "rekor",
                "--port",
                str(REKOR_PORT),
                "--db",
                f"{REKOR_DATA}/v1.db",
                "--db-v2",
                f"{REKOR_DATA}/v2.db",
                "--key",
                f"{folder}/rekor-key.pem",
                "--key-v2",
                f"{folder}/rekor-key-v2.pem",
                "--origin",
                v1_name,
                "--origin-v2",
                v2_origin,
            ]
        )
        return self


class FulcioContainer(SigstackContainer):
    """The certificate authority: short-lived certs with one embedded SCT."""

    service = "fulcio"
    port = FULCIO_PORT

    def _configure_service(self) -> None:
        self.with_command(
            ["fulcio", "--port", str(FULCIO_PORT), "--config", f"{CONFIG_ROOT}/fulcio/fulcio.json"]
        )
        super()._configure_service()


class TsaContainer(SigstackContainer):
    """The RFC 3161 timestamp authority (Debian's `openssl ts`)."""

    service = "tsa"
    port = TSA_PORT

    def _configure_service(self) -> None:
        self.with_command(
            ["tsa", "--port", str(TSA_PORT), "--config", f"{CONFIG_ROOT}/tsa/tsa.json"]
        )
        super()._configure_service()
