#!/usr/bin/env bash
# build-k8s-deps.sh: build and cache what the Kubernetes end-to-end tests (e2e/k8s) need:
# containerd 2.2 (+ shim, ctr), crictl, the CNI plugins bridge/loopback/host-local, runc, and
# two OCI image archives (a pause image and a busybox-static workload image).
#
# Everything goes to $BYPASS_HOOK_E2E_CACHE (default /var/cache/bypass-hook-e2e), outside the
# checkout, so CI and later runs reuse it. Idempotent: every piece is skipped when its stamp
# (name + pinned version) is present. Set FORCE=1 to rebuild everything.
#
# Needs: go, and (installed with apt-get when missing) libseccomp-dev, busybox-static, podman for
# the build, and tinyproxy, iproute2, util-linux (nsenter), nftables for the tests.
set -euo pipefail

CACHE="${BYPASS_HOOK_E2E_CACHE:-/var/cache/bypass-hook-e2e}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.2.2}"
CRICTL_VERSION="${CRICTL_VERSION:-v1.34.0}"
CNI_PLUGINS_VERSION="${CNI_PLUGINS_VERSION:-v1.9.1}"
RUNC_VERSION="${RUNC_VERSION:-v1.5.3}"
# Bump IMAGES_VERSION when the image recipes below change. The harness (e2e/k8s) uses the same refs.
IMAGES_VERSION="${IMAGES_VERSION:-1}"
PAUSE_IMAGE="localhost/bypass-hook-e2e/pause:${IMAGES_VERSION}"
BUSYBOX_IMAGE="localhost/bypass-hook-e2e/busybox:${IMAGES_VERSION}"

BIN="$CACHE/bin"
CNI_BIN="$CACHE/cni"
IMAGES="$CACHE/images"
STAMPS="$CACHE/stamps"

log() { printf '[build-k8s-deps] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs Debian packages with apt-get)"
command -v go >/dev/null || die "go not found in PATH"

mkdir -p "$BIN" "$CNI_BIN" "$IMAGES" "$STAMPS"
# One build at a time per cache (CI and a developer may share the machine).
exec 9>"$CACHE/.lock"
flock 9

# The user's Go module and build caches are shared (a warm cache makes this fast); GOFLAGS from
# the environment (say -mod=vendor for a checkout) is kept out.
export GOFLAGS="-buildvcs=false"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

# done_p STAMP FILE...: the piece is cached when its stamp and all its files are there.
done_p() {
	[ -z "${FORCE:-}" ] && [ -e "$STAMPS/$1" ] || return 1
	shift
	local f
	for f in "$@"; do [ -s "$f" ] || return 1; done
}
stamp()  { date -u +%FT%TZ > "$STAMPS/$1"; }

apt_install() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
		{ apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
}

start=$(date +%s)

# What the tests run (they skip without it): the node's proxy, ip, nsenter, nft.
apt_install tinyproxy iproute2 util-linux nftables

# --- containerd, shim, ctr --------------------------------------------------------------------
s="containerd-$CONTAINERD_VERSION"
if done_p "$s" "$BIN/containerd" "$BIN/containerd-shim-runc-v2" "$BIN/ctr"; then log "containerd $CONTAINERD_VERSION: cached"; else
	log "building containerd, containerd-shim-runc-v2, ctr $CONTAINERD_VERSION"
	for c in containerd containerd-shim-runc-v2 ctr; do
		GOBIN="$BIN" CGO_ENABLED=0 go install -tags no_btrfs \
			"github.com/containerd/containerd/v2/cmd/$c@$CONTAINERD_VERSION"
	done
	stamp "$s"
fi

# --- crictl -----------------------------------------------------------------------------------
s="crictl-$CRICTL_VERSION"
if done_p "$s" "$BIN/crictl"; then log "crictl $CRICTL_VERSION: cached"; else
	log "building crictl $CRICTL_VERSION"
	GOBIN="$BIN" CGO_ENABLED=0 go install \
		-ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
		"sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
	stamp "$s"
fi

# --- CNI plugins ------------------------------------------------------------------------------
s="cni-plugins-$CNI_PLUGINS_VERSION"
if done_p "$s" "$CNI_BIN/bridge" "$CNI_BIN/loopback" "$CNI_BIN/host-local"; then log "CNI plugins $CNI_PLUGINS_VERSION: cached"; else
	log "building CNI plugins bridge, loopback, host-local $CNI_PLUGINS_VERSION"
	GOBIN="$CNI_BIN" CGO_ENABLED=0 go install \
		"github.com/containernetworking/plugins/plugins/main/bridge@$CNI_PLUGINS_VERSION" \
		"github.com/containernetworking/plugins/plugins/main/loopback@$CNI_PLUGINS_VERSION" \
		"github.com/containernetworking/plugins/plugins/ipam/host-local@$CNI_PLUGINS_VERSION"
	stamp "$s"
fi

# --- runc (go install refuses it: replace directives; build from a copy of the module) --------
s="runc-$RUNC_VERSION"
if done_p "$s" "$BIN/runc"; then log "runc $RUNC_VERSION: cached"; else
	apt_install libseccomp-dev pkg-config gcc
	log "building runc $RUNC_VERSION (seccomp)"
	dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/opencontainers/runc@$RUNC_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$dir" ] || die "go mod download of runc $RUNC_VERSION gave no directory"
	work=$(mktemp -d /tmp/bypass-hook-runc.XXXXXX)
	trap 'rm -rf "$work"' EXIT
	cp -a "$dir/." "$work/"
	chmod -R u+w "$work"
	(cd "$work" && CGO_ENABLED=1 go build -trimpath -tags seccomp \
		-ldflags "-X main.version=${RUNC_VERSION#v}" -o "$BIN/runc" .)
	rm -rf "$work"; trap - EXIT
	"$BIN/runc" --version | sed -n 1p >&2  # not head: it would close the pipe early, and pipefail takes runc's SIGPIPE for a failure
	stamp "$s"
fi

# --- images -----------------------------------------------------------------------------------
# The Go sources of the pause program and of the probe live in e2e/k8s/testdata; a change to them
# (or to IMAGES_VERSION) rebuilds the images under the same refs.
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../e2e/k8s/testdata" && pwd)"
src_hash=$( (echo "$IMAGES_VERSION"; cat "$SRC/pause/main.go" "$SRC/bhprobe/main.go") | sha256sum | cut -c1-12)
s="images-$IMAGES_VERSION-$src_hash"
if done_p "$s" "$IMAGES/pause.oci.tar" "$IMAGES/busybox.oci.tar" "$BIN/bhprobe"; then
	log "images v$IMAGES_VERSION ($src_hash): cached"
else
	apt_install busybox-static podman
	work=$(mktemp -d /tmp/bypass-hook-images.XXXXXX)
	# A private podman store in the work dir (vfs: no mounts to undo), so the machine's own
	# podman storage and anyone else's podman tests are left alone.
	podman=(podman --root "$work/podman/root" --runroot "$work/podman/run" --storage-driver vfs)
	trap 'rm -rf "$work"' EXIT

	# Static Go programs, built from a copy with a go.mod of their own (stdlib only), so the
	# state of the checkout's go.mod does not matter.
	gobuild_static() { # NAME OUT
		mkdir -p "$work/src-$1"
		cp "$SRC/$1/main.go" "$work/src-$1/"
		printf 'module %s\n\ngo 1.21\n' "$1" > "$work/src-$1/go.mod"
		(cd "$work/src-$1" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$2" .)
	}

	log "building pause image $PAUSE_IMAGE"
	mkdir -p "$work/pause-root"
	gobuild_static pause "$work/pause-root/pause"
	cp "$work/pause-root/pause" "$BIN/pause"
	tar -C "$work/pause-root" --owner=0 --group=0 -cf "$work/pause.tar" .
	"${podman[@]}" import -q --change 'ENTRYPOINT ["/pause"]' --change 'USER 65535:65535' \
		"$work/pause.tar" "$PAUSE_IMAGE" >/dev/null
	rm -f "$IMAGES/pause.oci.tar"
	"${podman[@]}" save -q --format oci-archive -o "$IMAGES/pause.oci.tar" "$PAUSE_IMAGE"

	log "building busybox image $BUSYBOX_IMAGE (with /bin/bhprobe)"
	r="$work/busybox-root"
	mkdir -p "$r/bin" "$r/sbin" "$r/usr/bin" "$r/usr/sbin" "$r/etc" "$r/tmp" "$r/proc" "$r/sys" "$r/dev" "$r/root"
	chmod 1777 "$r/tmp"
	cp /bin/busybox "$r/bin/busybox"
	# What `busybox --install -s` does, without needing /proc in a chroot: one symlink per applet.
	/bin/busybox --list-full | while read -r p; do
		[ "$p" = bin/busybox ] || [ -e "$r/$p" ] || ln -s /bin/busybox "$r/$p"
	done
	gobuild_static bhprobe "$r/bin/bhprobe"
	cp "$r/bin/bhprobe" "$BIN/bhprobe"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$r/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' > "$r/etc/group"
	tar -C "$r" --owner=0 --group=0 -cf "$work/busybox.tar" .
	"${podman[@]}" import -q --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
		"$work/busybox.tar" "$BUSYBOX_IMAGE" >/dev/null
	rm -f "$IMAGES/busybox.oci.tar"
	"${podman[@]}" save -q --format oci-archive -o "$IMAGES/busybox.oci.tar" "$BUSYBOX_IMAGE"

	"${podman[@]}" rmi -a -f >/dev/null 2>&1 || true
	rm -rf "$work"; trap - EXIT
	rm -f "$STAMPS"/images-*
	stamp "$s"
fi

cat > "$CACHE/versions.env" <<VERS
CONTAINERD_VERSION=$CONTAINERD_VERSION
CRICTL_VERSION=$CRICTL_VERSION
CNI_PLUGINS_VERSION=$CNI_PLUGINS_VERSION
RUNC_VERSION=$RUNC_VERSION
PAUSE_IMAGE=$PAUSE_IMAGE
BUSYBOX_IMAGE=$BUSYBOX_IMAGE
VERS

log "done in $(( $(date +%s) - start ))s; cache: $CACHE"
log "  binaries:    $BIN: $(cd "$BIN" && echo *)"
log "  CNI plugins: $CNI_BIN: $(cd "$CNI_BIN" && echo *)"
log "  images:      $IMAGES: $(cd "$IMAGES" && echo *) ($PAUSE_IMAGE, $BUSYBOX_IMAGE)"
log "  versions:    $CACHE/versions.env"
