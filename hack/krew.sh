#!/usr/bin/env bash
# Packages `kubectl render` for krew: out/krew/kubectl-render-linux-amd64.tar.gz (the binary and
# README.md, reproducible: sorted, owner 0, mtime 0) and out/krew/render.yaml, the manifest
# plugins/render.yaml with the version, archive URL and SHA-256 filled in.
#
#   hack/krew.sh            build with --release and package
#   PROFILE=debug hack/krew.sh   package the debug binary (a quick check of the packaging)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PROFILE=${PROFILE:-release}
OUT=out/krew
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
[[ -n $version ]] || { echo "no version in Cargo.toml" >&2; exit 1; }
if [[ $PROFILE == release ]]; then
  cargo build --locked --release -p kubectl-render
else
  cargo build --locked -p kubectl-render
fi
rm -rf "$OUT"
mkdir -p "$OUT/pkg"
cp "target/$PROFILE/kubectl-render" README.md "$OUT/pkg/"
archive=$OUT/kubectl-render-linux-amd64.tar.gz
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$OUT/pkg" -cf - \
  kubectl-render README.md | gzip -n >"$archive"
rm -rf "$OUT/pkg"
sum=$(sha256sum "$archive" | cut -d' ' -f1)
sed -e "s/{{VERSION}}/$version/g" -e "s/{{SHA256}}/$sum/" plugins/render.yaml >"$OUT/render.yaml"
# What krew will look for: the bin in the archive, the sha256 of the archive.
if ! tar -tzf "$archive" | grep -x kubectl-render >/dev/null; then
  echo "no kubectl-render in $archive" >&2
  exit 1
fi
if grep -q '{{' "$OUT/render.yaml"; then
  echo "unfilled placeholder in $OUT/render.yaml" >&2
  exit 1
fi
echo "$archive ($sum)"
echo "$OUT/render.yaml (version v$version)"
