# bypass-hook. `make demo` fences a real runc container; `make test` runs
# everything (as root, with the packages .ci/run installs).

GO      ?= go
PREFIX  ?= /usr/local
DESTDIR ?=
BIN     := bin/bypass-hook
# The hook that runtimes run for every container: the stages alone, so that
# a container's start pays for little more than a Go program's start.
HOOKBIN := bin/bypass-hook-oci
# The runtime wrapper for engines that register no hook otherwise (Docker
# before 25, containerd 1.6): as lean as the hook, for the same reason.
RUNTIMEBIN := bin/bypass-hook-runtime
# Every binary `make build` makes; `make package` ships each of them.
BINS    := $(BIN) $(HOOKBIN) $(RUNTIMEBIN)
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build test unit fuzz vet demo bench clean bpf e2e-k8s e2e-k8s-deps e2e-docker-deps e2e-docker e2e-kube-deps e2e-kube

build: $(BINS)

# The version is linked into every binary, so it is one of their sources: a
# stamp rewritten only when it changes (a commit, a dirty tree) rebuilds them,
# where the Go files alone left the old commit in `--version`.
VERSION_STAMP := bin/.version
SOURCES := $(shell find . -name '*.go' -not -path './e2e/*') go.mod go.sum $(VERSION_STAMP)

$(VERSION_STAMP): FORCE
	@mkdir -p $(@D)
	@echo '$(VERSION)' | cmp -s - $@ || echo '$(VERSION)' > $@

.PHONY: FORCE
FORCE:

$(BIN): $(SOURCES)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/bypass-hook

$(HOOKBIN): $(SOURCES)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/bypass-hook-oci

$(RUNTIMEBIN): $(SOURCES)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/bypass-hook-runtime

vet:
	$(GO) vet ./...
	@# The bench's NRI figures build only with this tag (bench/nri_exec.go).
	$(GO) vet -tags nribench ./bench/

# The monitor's eBPF programs, compiled ahead and committed (the build and
# the hosts need no clang). Needs clang, llvm and libbpf-dev; the sum lets
# TestObjectsCurrent fail, without clang, when bpf/ changed since.
ATTRIB := monitor/attrib
bpf:
	cd $(ATTRIB) && $(GO) generate . && sha256sum gen.go bpf/attrib.c bpf/vmlinux.h > bpf/objects.sha256

# The core packages' tests, without the end-to-end suites. Tests that need
# root or a tool skip with a message saying which.
unit:
	$(GO) test -count=1 -short ./config/ ./hook/... ./monitor/... ./nriplugin/ ./install/ ./internal/cli/ ./wrapper/ ./cmd/...

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseState$$' -fuzztime 15s ./hook/oci/
	$(GO) test -run '^$$' -fuzz '^FuzzConfigRules$$' -fuzztime 15s ./hook/backend/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 15s ./hook/nfnl/
	$(GO) test -run '^$$' -fuzz '^FuzzAttrsAsNetlink$$' -fuzztime 15s ./hook/nfnl/
	$(GO) test -run '^$$' -fuzz '^FuzzParsePacket$$' -fuzztime 15s ./monitor/
	$(GO) test -run '^$$' -fuzz '^FuzzAddHooks$$' -fuzztime 15s ./wrapper/
	$(GO) test -run '^$$' -fuzz '^FuzzProcessOf$$' -fuzztime 15s ./monitor/attrib/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeVsock$$' -fuzztime 15s ./monitor/attrib/

# The containerd 2.2 end to end needs binaries built from the Go module
# proxy; they are cached outside the checkout (E2E_CACHE) and reused.
E2E_CACHE ?= /var/cache/bypass-hook-e2e
export BYPASS_HOOK_E2E_CACHE := $(E2E_CACHE)

e2e-k8s-deps:
	./scripts/build-k8s-deps.sh

# Docker has no CDI in Debian 12 (docker.io 20.10): the Docker end to end runs a daemon of its
# own, built from the Go module proxy into the same cache (it needs containerd and runc from
# the k8s deps).
e2e-docker-deps: e2e-k8s-deps
	./scripts/build-docker-deps.sh

# A real single-node Kubernetes (etcd, kube-apiserver, controller manager, scheduler, kubelet)
# and kubectl and helm, built from the Go module proxy into the same cache, run by e2e/kube on the
# containerd of the k8s deps. HELM_VERSION is the chart targets' helm.
e2e-kube-deps: e2e-k8s-deps
	HELM_VERSION=$(HELM_VERSION) ./scripts/build-kube-deps.sh

e2e-kube: build e2e-kube-deps
	BYPASS_HOOK_E2E_REQUIRE=1 $(GO) test -count=1 -v -timeout 20m ./e2e/kube/

e2e-docker: build e2e-docker-deps
	BYPASS_HOOK_E2E_REQUIRE=1 $(GO) test -count=1 -v -timeout 10m ./e2e/docker/

e2e-k8s: build e2e-k8s-deps
	BYPASS_HOOK_E2E_REQUIRE=1 $(GO) test -count=1 -v -timeout 20m ./e2e/k8s/

# Everything, as root: what CI runs. BYPASS_HOOK_E2E_REQUIRE turns the
# containerd and Docker suites' skip (binaries missing) into a failure.
test: build vet e2e-k8s-deps e2e-docker-deps e2e-kube-deps
	BYPASS_HOOK_E2E_REQUIRE=1 $(GO) test -count=1 -timeout 45m ./...
	$(MAKE) fuzz

demo: build
	./scripts/demo.sh $(CURDIR)/$(BIN)

clean:
	rm -rf bin build dist

# Whole-process timings of the hook's create and poststop per backend against
# the per-rule way (a binary built with -tags perrule) and a minimal static Go
# binary (built by the bench), bursts of parallel creates, peak RSS, and the
# hook binary's package initialisation; the scale figures (create and
# poststop beside 1,000 live fences, status over them, the monitor idle, the
# NRI plugin's synchronization with 100 running pods); the churn
# (TestMonitorChurn, 500 containers per backend and log target, its counts of
# what was lost or doubled); then what the monitor's attribution costs per
# attempt and in map memory.
# Needs root; see docs/bench.md.
# BENCHFLAGS passes flags, e.g. BENCHFLAGS='-n 100'.
BENCHFLAGS ?=
bench: $(HOOKBIN) $(RUNTIMEBIN) $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -tags perrule -ldflags '$(LDFLAGS)' -o bin/bypass-hook-perrule ./cmd/bypass-hook-oci
	$(GO) run ./bench -hook $(HOOKBIN) -runtime $(RUNTIMEBIN) -perrule bin/bypass-hook-perrule -cli $(BIN) -go $(GO) $(BENCHFLAGS)
	@# The monitor's attribution: CPU per refused attempt off, loaded, fenced; its maps' memory.
	$(GO) test -run '^$$' -bench '^BenchmarkAttribution$$' -benchtime 1x ./$(ATTRIB)/

# `make install`: the binaries (the CLI and the hook it registers), an example config (never over an existing one), the
# hooks.d file for podman and CRI-O (written by the binary itself, for the config's
# selection), the CDI spec for Docker and every CDI runtime, and the sysctl.d file
# for nf_log_all_netns. Honours DESTDIR and PREFIX.
# See docs/install.md for containerd (NRI) and Kubernetes.
SYSCONFDIR ?= /etc
# Empty: where the installed podman and CRI-O read hooks.d files (under
# DESTDIR: their config there, else their default /usr/share/containers/oci/hooks.d).
HOOKSDIR   ?=
CDIDIR     ?= $(SYSCONFDIR)/cdi
SYSCTLDIR  ?= $(SYSCONFDIR)/sysctl.d
# The hook finds /etc/bypass-hook/config.yaml by itself; elsewhere it is told.
HOOK_CONFIG_FLAG = $(if $(filter /etc,$(SYSCONFDIR)),,--config $(SYSCONFDIR)/bypass-hook/config.yaml)

.PHONY: install
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/bypass-hook
	install -D -m 0755 $(HOOKBIN) $(DESTDIR)$(PREFIX)/bin/bypass-hook-oci
	install -D -m 0755 $(RUNTIMEBIN) $(DESTDIR)$(PREFIX)/bin/bypass-hook-runtime
	@if [ -e "$(DESTDIR)$(SYSCONFDIR)/bypass-hook/config.yaml" ]; then \
		echo "keeping the existing $(DESTDIR)$(SYSCONFDIR)/bypass-hook/config.yaml"; \
	else \
		echo "install -D -m 0644 install/config.example.yaml $(DESTDIR)$(SYSCONFDIR)/bypass-hook/config.yaml"; \
		install -D -m 0644 install/config.example.yaml "$(DESTDIR)$(SYSCONFDIR)/bypass-hook/config.yaml"; \
	fi
	install -D -m 0644 install/sysctl.d/90-bypass-hook.conf $(DESTDIR)$(SYSCTLDIR)/90-bypass-hook.conf
	@# Applied now, not only at the next boot: until then the kernel drops the LOG
	@# lines of every container. Into a DESTDIR (packaging) the package applies it.
	@if [ -z "$(DESTDIR)" ]; then \
		echo "sysctl -p $(SYSCTLDIR)/90-bypass-hook.conf"; \
		sysctl -p $(SYSCTLDIR)/90-bypass-hook.conf || \
			echo "WARNING: could not apply net.netfilter.nf_log_all_netns=1: LOG lines of containers are dropped until it is (log.target: nflog needs it not)"; \
	fi
	env -u BYPASS_HOOK_CONFIG $(BIN) install hooks-dir $(HOOKSDIR) --root "$(DESTDIR)" \
		--binary $(PREFIX)/bin/bypass-hook-oci $(HOOK_CONFIG_FLAG)
	env -u BYPASS_HOOK_CONFIG $(BIN) install cdi $(CDIDIR) --root "$(DESTDIR)" \
		--binary $(PREFIX)/bin/bypass-hook-oci $(HOOK_CONFIG_FLAG)
	@echo "With selection: all (the default), once proxies are named in $(SYSCONFDIR)/bypass-hook/config.yaml"
	@echo "EVERY podman and CRI-O container is fenced at its next start. To fence only containers annotated"
	@echo "bypass-hook.io/enabled=true, set selection: annotated first, then run: bypass-hook install hooks-dir"
	@echo "Then: bypass-hook config validate, and bypass-hook check"

# The monitor and status (docs/monitor.md): unit tests need no root; as root
# also the runc end to end per log target, backend and mode, the churn of
# 100 fences and the burst of 1,000 attempts.
.PHONY: test-monitor
test-monitor:
	$(GO) test -count=1 -v ./monitor/

# `make package`: dist/bypass-hook_VERSION_ARCH.deb and the .rpm, built by
# nfpm (packaging/nfpm.yaml) run from the Go module proxy at a pinned version.
# What goes in: every binary of BINS, the example config as a conffile, the
# sysctl, logrotate and systemd files; the maintainer scripts write the
# hooks.d registration with the installed binary (packaging/scripts).
NFPM_VERSION   := v2.48.0
NFPM           ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)
PKG_VERSION    ?= $(shell ./scripts/package-version.sh)
PKG_ARCH       ?= $(shell $(GO) env GOARCH)
PKG_MAINTAINER ?= bypass-hook maintainers <maintainers@bypass-hook.invalid>
PKG_STAGE      ?= build/package
DIST           ?= dist

.PHONY: package
package: build
	rm -rf $(PKG_STAGE) && mkdir -p $(PKG_STAGE)/bin $(PKG_STAGE)/systemd $(DIST)
	@# Only this build's: `apt install ./dist/bypass-hook_*.deb` must find one.
	rm -f $(DIST)/bypass-hook_*.deb $(DIST)/bypass-hook-*.rpm
	cp $(BINS) $(PKG_STAGE)/bin/
	for u in install/systemd/*.service; do \
		sed 's|/usr/local/bin/|/usr/bin/|g' $$u > $(PKG_STAGE)/systemd/$$(basename $$u) || exit 1; \
	done
	for p in deb rpm; do \
		PKG_STAGE=$(PKG_STAGE) PKG_VERSION='$(PKG_VERSION)' PKG_ARCH=$(PKG_ARCH) PKG_MAINTAINER='$(PKG_MAINTAINER)' \
			$(NFPM) package --config packaging/nfpm.yaml --packager $$p --target $(DIST)/ || exit 1; \
	done

# `make image`: the DaemonSets' image, FROM scratch with the binaries `make build` made
# here (install/Containerfile): nothing is pulled, so it builds offline.
# CONTAINER_ENGINE=docker builds it with docker.
CONTAINER_ENGINE ?= podman
IMAGE            ?= bypass-hook:$(VERSION)
IMAGE_CONTEXT    ?= build/image
.PHONY: image
image: build
	rm -rf $(IMAGE_CONTEXT) && mkdir -p $(IMAGE_CONTEXT)
	cp $(BINS) install/Containerfile $(IMAGE_CONTEXT)/
	$(CONTAINER_ENGINE) build -f $(IMAGE_CONTEXT)/Containerfile -t $(IMAGE) \
		--build-arg VERSION=$(VERSION) --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
		$(IMAGE_CONTEXT)

# The Helm chart (deploy/helm/bypass-hook), with helm run from the Go module proxy
# at a pinned version. `make chart-template` prints what it renders (the test in
# install/ compares it with install/kubernetes); HELM_FLAGS passes more, e.g.
# HELM_FLAGS='--set monitor.enabled=true'.
HELM_VERSION := v3.22.0
HELM         ?= $(GO) run helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
CHART        := deploy/helm/bypass-hook
HELM_FLAGS   ?=
.PHONY: chart-template chart-lint
chart-template:
	@$(HELM) template bypass-hook $(CHART) --namespace kube-system $(HELM_FLAGS)
chart-lint:
	$(HELM) lint --strict $(CHART)
