#!/usr/bin/env bash
# Start a real Docker engine for the docker test tier and make the local base image it needs.
#
# Idempotent: installs docker.io + mmdebstrap only if missing, starts dockerd only if no engine
# answers, builds the base image only if its tag is missing. No registry is reachable in CI, so
# the base image is a Debian bookworm (Python 3.11, like the kernel) made with mmdebstrap from
# the machine's own apt sources and loaded with `docker import`. The engine's data root and the
# rootfs tarball live under a cache directory that survives across runs on the same machine.
#
# Env: SIEVE_TEST_BASE_IMAGE (tag of the base image, default below),
#      SIEVE_CI_CACHE (cache directory, default /var/cache/sieve-jupyter-ci).
set -euo pipefail

BASE_IMAGE="${SIEVE_TEST_BASE_IMAGE:-sieve-jupyter-test/base:bookworm}"
CACHE="${SIEVE_CI_CACHE:-/var/cache/sieve-jupyter-ci}"
ENGINE_DIR="$CACHE/engine"
TARBALL="$CACHE/base-bookworm.tar"
# Everything the runtime and the builder's Dockerfile need from a base: python + venv + pip,
# CA certificates for TLS, and nothing else (the builder adds apt/pip packages per environment).
INCLUDE="python3,python3-venv,python3-pip,ca-certificates"

log() { printf '[docker-engine] %s\n' "$*" >&2; }

# Prefer Debian's own client (it matches the engine's API); fall back to whatever is on PATH.
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER="$(command -v docker || true)"

wait_for_apt() {
  # Another apt/dpkg may be running (e.g. an unattended install); wait instead of fighting the lock.
  local i
  for i in $(seq 1 300); do
    if ! pgrep -x apt-get >/dev/null && ! pgrep -x dpkg >/dev/null && ! pgrep -x apt >/dev/null; then
      return 0
    fi
    [ "$i" = 1 ] && log "waiting for another apt/dpkg to finish"
    sleep 2
  done
  log "apt/dpkg still busy after 10 minutes"; return 1
}

install_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  wait_for_apt
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  DOCKER=/usr/bin/docker
}

engine_up() { "$DOCKER" info >/dev/null 2>&1; }

start_engine() {
  if engine_up; then
    log "engine already answering"
    return 0
  fi
  mkdir -p "$ENGINE_DIR/data" "$ENGINE_DIR/exec"
  local pidfile="$ENGINE_DIR/dockerd.pid"
  # A stale pidfile from a killed engine blocks startup; remove it unless its process is a
  # live dockerd (after a restart the number it holds may belong to any other process).
  if [ -f "$pidfile" ] && [ "$(cat "/proc/$(cat "$pidfile")/comm" 2>/dev/null)" != dockerd ]; then
    rm -f "$pidfile"
  fi
  log "starting dockerd (data root $ENGINE_DIR/data)"
  setsid dockerd \
    --data-root "$ENGINE_DIR/data" \
    --exec-root "$ENGINE_DIR/exec" \
    --pidfile "$pidfile" \
    >"$ENGINE_DIR/dockerd.log" 2>&1 </dev/null &
  local i
  for i in $(seq 1 60); do
    engine_up && { log "engine up"; return 0; }
    sleep 1
  done
  log "dockerd did not answer within 60 s; last log lines:"
  tail -n 30 "$ENGINE_DIR/dockerd.log" >&2 || true
  return 1
}

make_base_image() {
  if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE present"
    return 0
  fi
  if [ ! -s "$TARBALL" ]; then
    log "making the base rootfs with mmdebstrap (about half a minute)"
    mkdir -p "$CACHE"
    mmdebstrap --quiet --format=tar --variant=minbase --include="$INCLUDE" bookworm "$TARBALL.part"
    mv "$TARBALL.part" "$TARBALL"
  fi
  log "importing $TARBALL as $BASE_IMAGE"
  "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    "$TARBALL" "$BASE_IMAGE" >/dev/null
}

install_packages
start_engine
make_base_image
log "ready: export SIEVE_TEST_BASE_IMAGE=$BASE_IMAGE"
