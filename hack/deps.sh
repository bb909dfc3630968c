#!/usr/bin/env bash
# Installs what building and testing renderfarm needs on a fresh Debian bookworm machine
# (run as root). Idempotent: installs only what is missing.
set -euo pipefail

want=()
need() { dpkg -s "$1" >/dev/null 2>&1 || want+=("$1"); }
for p in "$@"; do need "$p"; done
need openssl
need curl
need shellcheck
if ((${#want[@]})); then
  echo "[deps] installing: ${want[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "[deps] Go is required (1.26+)" >&2; exit 1; }
command -v cargo >/dev/null || { echo "[deps] Rust is required (cargo)" >&2; exit 1; }
