#!/usr/bin/env bash
# Set up everything cihub needs on a fresh Debian machine with a Docker engine:
# the Debian tools the lab bootstraps images with, and a virtualenv with cihub and its tests.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
# mmdebstrap bootstraps the base image; diffoscope and its helpers (ELF, zip/wheel, tar) explain
# a determinism mismatch; docker-compose (Debian's 1.29) runs compose.yaml; chromium renders a
# bundle's summary.html as a reviewer sees it (a test screenshots it).
APT_PACKAGES=(mmdebstrap diffoscope-minimal binutils unzip libarchive-tools xxd xz-utils bzip2
  docker-compose chromium)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.cihub-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing cihub and its test tools into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q -e '.[test,lint]'
  touch "$stamp"
fi

# Byte-compile cihub's own modules: with PYTHONDONTWRITEBYTECODE set (as on some CI images),
# every cihub command would otherwise compile them again (~0.2 s each). A stale .pyc is never
# used (Python checks the source's mtime); up-to-date ones are skipped here.
"$VENV/bin/python" -m compileall -q harness lab >/dev/null

if ! docker info >/dev/null 2>&1; then
  echo "setup: no Docker engine answers: start one (e.g. 'sudo systemctl start docker')" >&2
  exit 2
fi
echo "setup: ready" >&2
