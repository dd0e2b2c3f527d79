#!/usr/bin/env bash
# build-kube-deps.sh: build and cache the control plane the Kubernetes end to end (e2e/kube) runs
# on the containerd of scripts/build-k8s-deps.sh: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kubectl and helm, all from the Go module proxy.
#
# k8s.io/kubernetes cannot be built with `go install pkg@version`: its go.mod replaces every
# k8s.io/* staging module with ./staging/src/k8s.io/..., which its module zip lacks. It is built in
# a throwaway module that requires it and replaces each of those with the published module of
# the same release (k8s.io/api v0.37.2 for v1.37.2). etcd's server module has replace directives
# of its own for the same reason: same treatment, without needing any replace (its modules are
# published at the same version).
#
# Everything goes to $BYPASS_HOOK_E2E_CACHE/bin (default /var/cache/bypass-hook-e2e), skipped
# when its stamp is there; FORCE=1 rebuilds. kube-versions.env records what was built.
set -euo pipefail

CACHE="${BYPASS_HOOK_E2E_CACHE:-/var/cache/bypass-hook-e2e}"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.4}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"

BIN="$CACHE/bin"
STAMPS="$CACHE/stamps"

log() { printf '[build-kube-deps] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v go >/dev/null || die "go not found in PATH"
mkdir -p "$BIN" "$STAMPS"
exec 9>"$CACHE/.lock"
flock 9

export GOFLAGS="-buildvcs=false"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export CGO_ENABLED=0

done_p() {
	[ -z "${FORCE:-}" ] && [ -e "$STAMPS/$1" ] || return 1
	shift
	local f
	for f in "$@"; do [ -s "$f" ] || return 1; done
}
stamp() { date -u +%FT%TZ > "$STAMPS/$1"; }

work=$(mktemp -d /tmp/bypass-hook-kube.XXXXXX)
trap 'rm -rf "$work"' EXIT
start=$(date +%s)

# throwaway DIR MODULE@VERSION [REPLACE...]: a module in DIR that requires MODULE@VERSION, with
# each REPLACE ("path version") as a replace directive, and its requirements resolved.
throwaway() {
	local dir=$1 req=$2; shift 2
	mkdir -p "$dir"
	{
		printf 'module bypass-hook-e2e-kube\n\ngo 1.26.0\n\nrequire %s %s\n' "${req%@*}" "${req#*@}"
		local r
		for r in "$@"; do printf 'replace %s => %s\n' "${r% *}" "$r"; done
	} > "$dir/go.mod"
}

# --- kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl -----------------
s="kubernetes-$KUBERNETES_VERSION"
kbins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
if done_p "$s" "${kbins[@]/#/$BIN/}"; then log "kubernetes $KUBERNETES_VERSION: cached"; else
	log "building ${kbins[*]} $KUBERNETES_VERSION"
	modfile=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
	[ -s "$modfile" ] || die "go mod download of k8s.io/kubernetes $KUBERNETES_VERSION gave no go.mod"
	staging=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$modfile")
	[ -n "$staging" ] || die "k8s.io/kubernetes $KUBERNETES_VERSION: no staging replace directives in its go.mod"
	reps=()
	for m in $staging; do reps+=("$m v0.${KUBERNETES_VERSION#v1.}"); done
	throwaway "$work/kubernetes" "k8s.io/kubernetes@$KUBERNETES_VERSION" "${reps[@]}"
	pkgs=("${kbins[@]/#/k8s.io/kubernetes/cmd/}")
	(cd "$work/kubernetes" && go get "${pkgs[@]/%/@$KUBERNETES_VERSION}" >/dev/null 2>&1 ||
		go get "${pkgs[@]/%/@$KUBERNETES_VERSION}")
	minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
	ld="-s -w"
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
	done
	(cd "$work/kubernetes" && go build -trimpath -ldflags "$ld" -o "$BIN/" "${pkgs[@]}")
	"$BIN/kubelet" --version >&2
	stamp "$s"
fi

# --- etcd -------------------------------------------------------------------------------------
s="etcd-$ETCD_VERSION"
if done_p "$s" "$BIN/etcd"; then log "etcd $ETCD_VERSION: cached"; else
	log "building etcd $ETCD_VERSION"
	throwaway "$work/etcd" "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
	(cd "$work/etcd" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 ||
		go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
	(cd "$work/etcd" && go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
	"$BIN/etcd" --version | sed -n 1p >&2  # not head: see build-k8s-deps.sh
	stamp "$s"
fi

# --- helm (no replace directives: go install works) -----------------------------------------
# Built as `make chart-template`'s `go run helm@HELM_VERSION` builds it (cgo as go's default, no
# -trimpath), so that the Go build cache serves both.
s="helm-$HELM_VERSION"
if done_p "$s" "$BIN/helm"; then log "helm $HELM_VERSION: cached"; else
	log "building helm $HELM_VERSION"
	GOBIN="$BIN" env -u CGO_ENABLED go install \
		-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
		"helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
	"$BIN/helm" version --short >&2
	stamp "$s"
fi

cat > "$CACHE/kube-versions.env" <<VERS
KUBERNETES_VERSION=$KUBERNETES_VERSION
ETCD_VERSION=$ETCD_VERSION
HELM_VERSION=$HELM_VERSION
VERS

log "done in $(( $(date +%s) - start ))s; binaries in $BIN"
