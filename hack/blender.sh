#!/usr/bin/env bash
# Blender for the host-side tests, as the node image has it: PyPI's bpy wheel (Blender as a
# Python module) in a venv of Debian's python3.11, pinned by hash
# (node-image/blender/requirements-SERIES.txt), with node-image/scripts/blender.py as its
# `blender` command.
#
#   hack/blender.sh [SERIES...]   install (default: 4.5); idempotent, reinstalls when the
#                                 requirements file changed
#   hack/blender.sh path SERIES   print the `blender` command of SERIES
#
# Venvs live in $RENDERFARM_CACHE/blender/SERIES (default $HOME/.cache/renderfarm); the Debian
# libraries the wheel needs (node-image/blender/debian-packages.txt) and python3-venv are
# installed through hack/deps.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=$(realpath -m "${RENDERFARM_CACHE:-$HOME/.cache/renderfarm}")/blender
REQS=$ROOT/node-image/blender

say() { printf '[blender] %s\n' "$*" >&2; }

wrapper() { printf '%s/%s/bin/blender' "$CACHE" "$1"; }

# The interpreter the wheels are built for: CPython 3.11, Debian bookworm's python3.
python311() {
  local p
  for p in /usr/bin/python3.11 "$(command -v python3.11 || true)"; do
    if [[ -x $p ]] && "$p" -c 'import sys, venv; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
      printf '%s' "$p"
      return
    fi
  done
  say "needs CPython 3.11 with venv (Debian bookworm: apt-get install python3 python3-venv)"
  exit 1
}

install_series() {
  local series=$1 req dir tmp python t=$SECONDS
  req=$REQS/requirements-$series.txt
  if [[ ! -f $req ]]; then
    local offered=("$REQS"/requirements-*.txt)
    offered=("${offered[@]##*/requirements-}")
    say "no $req: the series offered are ${offered[*]%.txt}"
    exit 1
  fi
  dir=$CACHE/$series
  if ! cmp -s "$req" "$dir/requirements.txt"; then
    python=$(python311)
    tmp=$dir.tmp.$$
    rm -rf "$tmp"
    mkdir -p "$CACHE"
    say "installing Blender $series into $dir (about 370 MB to download) ..."
    "$python" -m venv "$tmp"
    "$tmp/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
      --require-hashes --only-binary :all: -r "$req"
    cp "$req" "$tmp/requirements.txt"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    # A venv's own scripts name its first path; only bin/python is used, which does not.
    say "Blender $series installed in $((SECONDS - t))s"
  fi
  # Rewritten every time: it points at this checkout's blender.py.
  cat >"$(wrapper "$series")" <<EOF
#!/bin/sh
exec "$dir/bin/python" -I -B "$ROOT/node-image/scripts/blender.py" "\$@"
EOF
  chmod +x "$(wrapper "$series")"
}

main() {
  if [[ ${1:-} == path ]]; then
    wrapper "${2:?usage: hack/blender.sh path SERIES}"
    echo
    return
  fi
  local packages
  packages=$(grep -v '^#' "$REQS/debian-packages.txt" | xargs)
  # shellcheck disable=SC2086 # one package a word
  "$ROOT/hack/deps.sh" python3 python3-venv $packages
  local series
  for series in "${@:-4.5}"; do
    install_series "$series"
  done
}

main "$@"
