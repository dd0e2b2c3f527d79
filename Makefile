# bypass-hook. `make demo` fences a real runc container; `make test` runs
# everything (as root, with the packages .ci/run installs).

GO      ?= go
PREFIX  ?= /usr/local
DESTDIR ?=
BIN     := bin/bypass-hook
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build test unit integration fuzz vet demo bench clean

build: $(BIN)

$(BIN): $(shell find . -name '*.go' -not -path './e2e/*') go.mod go.sum
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/bypass-hook

vet:
	$(GO) vet ./...

# Unit tests need no root; the rest skip without root or a tool, with a
# message saying which.
unit:
	$(GO) test -count=1 -short ./config/ ./hook/ ./cmd/...

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseState$$' -fuzztime 15s ./hook/
	$(GO) test -run '^$$' -fuzz '^FuzzConfigRules$$' -fuzztime 15s ./hook/

test: build vet
	$(GO) test -count=1 -timeout 30m ./...
	$(MAKE) fuzz

demo: build
	./scripts/demo.sh $(CURDIR)/$(BIN)

clean:
	rm -rf bin
