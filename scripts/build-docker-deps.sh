#!/usr/bin/env bash
# build-docker-deps.sh: build and cache what the Docker end-to-end tests (e2e/docker) need: a
# Docker Engine with CDI (dockerd 29, from github.com/moby/moby/v2) and a docker CLI that turns
# `--device vendor/class=name` into a CDI request (25 or later). The daemon also runs containerd,
# containerd-shim-runc-v2 and runc: scripts/build-k8s-deps.sh builds those into the same cache
# (`make e2e-docker-deps` runs it first).
#
# Debian 12's docker.io is 20.10, without CDI; no Docker package is reachable from here, only the
# Go module proxy. The tests run their own daemon from this cache (own data root, exec root and
# socket; no iptables, no bridge), never the machine's.
#
# Everything goes to $BYPASS_HOOK_E2E_CACHE (default /var/cache/bypass-hook-e2e), outside the
# checkout. Idempotent: every piece is skipped when its stamp (name + pinned version) is there.
# Set FORCE=1 to rebuild. The cache's lock serialises it with build-k8s-deps.sh.
set -euo pipefail

CACHE="${BYPASS_HOOK_E2E_CACHE:-/var/cache/bypass-hook-e2e}"
# moby's v2 module is the daemon of Docker Engine 29 (cmd/dockerd); the CLI is still released as
# github.com/docker/cli, a module without go.mod (its vendor.mod is the go.mod).
MOBY_VERSION="${MOBY_VERSION:-v2.0.0-beta.24}"
DOCKER_CLI_VERSION="${DOCKER_CLI_VERSION:-v28.5.2}"

BIN="$CACHE/bin"
STAMPS="$CACHE/stamps"

log() { printf '[build-docker-deps] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it writes $CACHE)"
command -v go >/dev/null || die "go not found in PATH"

mkdir -p "$BIN" "$STAMPS"
exec 9>"$CACHE/.lock"
flock 9

export GOFLAGS="-buildvcs=false"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

done_p() {
	[ -z "${FORCE:-}" ] && [ -e "$STAMPS/$1" ] || return 1
	shift
	local f
	for f in "$@"; do [ -s "$f" ] || return 1; done
}
stamp() { date -u +%FT%TZ > "$STAMPS/$1"; }

start=$(date +%s)

# --- dockerd ----------------------------------------------------------------------------------
# Static, no CGO: no devicemapper, btrfs or journald log driver, which the tests do not use.
s="dockerd-$MOBY_VERSION"
if done_p "$s" "$BIN/dockerd"; then log "dockerd $MOBY_VERSION: cached"; else
	log "building dockerd $MOBY_VERSION (a few minutes)"
	GOBIN="$BIN" CGO_ENABLED=0 go install -trimpath \
		-ldflags "-X github.com/moby/moby/v2/dockerversion.Version=${MOBY_VERSION#v}" \
		"github.com/moby/moby/v2/cmd/dockerd@$MOBY_VERSION"
	"$BIN/dockerd" --version >&2
	stamp "$s"
fi

# --- docker CLI (go install refuses it: no go.mod; build from a copy with vendor.mod as go.mod) -
s="docker-cli-$DOCKER_CLI_VERSION"
if done_p "$s" "$BIN/docker"; then log "docker CLI $DOCKER_CLI_VERSION: cached"; else
	log "building the docker CLI $DOCKER_CLI_VERSION"
	dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/docker/cli@$DOCKER_CLI_VERSION+incompatible" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$dir" ] || die "go mod download of the docker CLI $DOCKER_CLI_VERSION gave no directory"
	work=$(mktemp -d /tmp/bypass-hook-docker-cli.XXXXXX)
	trap 'rm -rf "$work"' EXIT
	cp -a "$dir/." "$work/"
	chmod -R u+w "$work"
	rm -rf "$work/vendor"
	cp "$work/vendor.mod" "$work/go.mod"
	cp "$work/vendor.sum" "$work/go.sum"
	(cd "$work" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
		-ldflags "-X github.com/docker/cli/cli/version.Version=${DOCKER_CLI_VERSION#v}" \
		-o "$BIN/docker" ./cmd/docker)
	rm -rf "$work"; trap - EXIT
	"$BIN/docker" --version >&2
	stamp "$s"
fi

# The daemon's helpers, from build-k8s-deps.sh.
for b in containerd containerd-shim-runc-v2 runc; do
	[ -x "$BIN/$b" ] || die "$BIN/$b is missing: run scripts/build-k8s-deps.sh (make e2e-k8s-deps) first"
done

cat > "$CACHE/docker-versions.env" <<VERS
MOBY_VERSION=$MOBY_VERSION
DOCKER_CLI_VERSION=$DOCKER_CLI_VERSION
VERS

log "done in $(( $(date +%s) - start ))s; cache: $BIN: dockerd, docker (with containerd, shim, runc)"
