#!/usr/bin/env bash
# A local Docker engine for building and trying the images, on a machine without systemd and
# without access to a container registry.
#
#   hack/docker.sh up      install Debian's docker.io if needed, start dockerd (if it is not
#                          already answering), and create the debian:bookworm-slim base image
#                          locally with mmdebstrap when it is missing
#   hack/docker.sh down    stop the dockerd this script started
#   hack/docker.sh status  say whether dockerd answers and whether the base image exists
#   hack/docker.sh build ARGS...  `docker build ARGS` with BuildKit, which skips a Dockerfile's
#                          unused builder stage (the Rust image cannot be pulled here)
#
# Idempotent: `up` twice starts one dockerd; `down` when nothing runs does nothing.
# Environment: DOCKERD_LOG (default /var/log/dockerd.log), BASE_IMAGE (default
# debian:bookworm-slim).
set -euo pipefail

HACK=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
PIDFILE=/var/run/docker.pid
BASE=${BASE_IMAGE:-debian:bookworm-slim}

say() { printf '[docker] %s\n' "$*" >&2; }

need_root() {
  if [[ $(id -u) -ne 0 ]]; then
    say "run as root (starts dockerd, installs Debian packages)"
    exit 1
  fi
}

answering() { docker info >/dev/null 2>&1; }

install() {
  local want=()
  command -v dockerd >/dev/null || want+=(docker.io)
  command -v mmdebstrap >/dev/null || want+=(mmdebstrap)
  if ((${#want[@]})); then
    say "installing ${want[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
  fi
}

# full_caps: the CapBnd mask with every capability the kernel knows.
full_caps() {
  printf '%016x' $(((1 << ($(cat /proc/sys/kernel/cap_last_cap) + 1)) - 1))
}

start() {
  if answering; then
    say "dockerd is already answering"
    return
  fi
  if [[ -s $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    say "dockerd (pid $(cat "$PIDFILE")) runs but does not answer yet"
  else
    rm -f "$PIDFILE"
    say "starting dockerd (log: $LOG)"
    local driver=cgroupfs
    # On a cgroup v2 host without systemd, cgroupfs still works; systemd only if it runs.
    [[ -d /run/systemd/system ]] && driver=systemd
    local runtime=()
    # Without every capability in our bounding set, Docker 20.10's --privileged fails in runc;
    # hack/runc-bounded drops the missing ones (kind's nodes are privileged containers).
    if [[ $(awk '/^CapBnd:/ { print $2 }' /proc/self/status) != "$(full_caps)" ]]; then
      say "capabilities missing from the bounding set: runtime hack/runc-bounded"
      runtime=(--add-runtime "bounded=$HACK/runc-bounded" --default-runtime bounded)
    fi
    nohup dockerd --storage-driver overlay2 --exec-opt "native.cgroupdriver=$driver" \
      "${runtime[@]}" --pidfile "$PIDFILE" >>"$LOG" 2>&1 &
  fi
  local i
  for ((i = 0; i < 60; i++)); do
    if answering; then
      say "dockerd answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
      return
    fi
    sleep 1
  done
  say "dockerd did not answer within 60 s; last lines of $LOG:"
  tail -n 20 "$LOG" >&2 || true
  exit 1
}

base() {
  if docker image inspect "$BASE" >/dev/null 2>&1; then
    say "$BASE exists"
    return
  fi
  say "making $BASE locally with mmdebstrap (no registry here)"
  local t0=$SECONDS
  mmdebstrap --quiet --variant=minbase bookworm - | docker import - "$BASE" >/dev/null
  say "$BASE made in $((SECONDS - t0)) s"
}

stop() {
  if [[ ! -s $PIDFILE ]]; then
    say "no dockerd pid file; nothing to stop"
    return
  fi
  local pid
  pid=$(cat "$PIDFILE")
  if ! kill -0 "$pid" 2>/dev/null; then
    say "dockerd (pid $pid) is not running"
    rm -f "$PIDFILE"
    return
  fi
  say "stopping dockerd (pid $pid)"
  kill "$pid"
  local i
  for ((i = 0; i < 30; i++)); do
    kill -0 "$pid" 2>/dev/null || {
      say "stopped"
      return
    }
    sleep 1
  done
  say "dockerd (pid $pid) did not stop within 30 s"
  exit 1
}

# The buildx plugin provides BuildKit; without buildx, a Docker client older than 23 has it
# built in (Debian bookworm's docker.io package ships one).
build() {
  if docker buildx version >/dev/null 2>&1; then
    docker buildx build --load "$@"
    return
  fi
  local cli major
  while read -r cli; do
    major=$("$cli" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1) || continue
    if [[ $major =~ ^[0-9]+$ ]] && ((major < 23)); then
      DOCKER_BUILDKIT=1 "$cli" build "$@"
      return
    fi
  done < <(type -ap docker)
  say "no BuildKit: install the docker buildx plugin (or Debian's docker.io client)"
  exit 1
}

case "${1:-}" in
  build)
    shift
    build "$@"
    ;;
  up)
    need_root
    install
    start
    base
    ;;
  down)
    need_root
    stop
    ;;
  status)
    if answering; then say "dockerd answers"; else say "dockerd does not answer"; fi
    if docker image inspect "$BASE" >/dev/null 2>&1; then say "$BASE exists"; else say "$BASE is missing"; fi
    ;;
  *)
    echo "usage: $0 up|down|status|build ARGS..." >&2
    exit 2
    ;;
esac
