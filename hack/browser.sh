#!/usr/bin/env bash
# Installs what the browser test of `kubectl render ui` needs: Debian's chromium and
# chromedriver (apt, through deps.sh) and Playwright for Python in a venv of its own under the
# cache. Playwright drives the system chromium (its own browser download is not used). Prints
# the venv's python on stdout. Idempotent.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${RENDERFARM_CACHE:-$HOME/.cache/renderfarm}
PLAYWRIGHT_VERSION=1.65.2
venv=$CACHE/playwright-$PLAYWRIGHT_VERSION

"$ROOT/hack/deps.sh" chromium chromium-driver python3-venv >&2
if ! [[ -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import playwright' 2>/dev/null; then
  echo "[browser] installing playwright $PLAYWRIGHT_VERSION into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "playwright==$PLAYWRIGHT_VERSION" >&2
fi
echo "$venv/bin/python"
