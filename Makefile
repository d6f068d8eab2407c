# spot-agent: the common tasks. `make test` is what CI runs (through .ci/run).
SHELL := /bin/bash
GO ?= go
BIN := bin/spot-agent
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(shell date -u +%Y-%m-%dT%H:%M:%SZ)

.PHONY: build test lint unit demo fuzz clean

build: ## the static binary in bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/spot-agent

lint: ## gofmt, go vet, shellcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: the files above need formatting'; exit 1; }
	$(GO) vet ./...
	shellcheck $$(git ls-files '*.sh') .ci/run

unit: ## every Go test, race detector on
	$(GO) test -race -count=1 ./...

test: lint unit ## everything CI checks

demo: ## one spot interruption, end to end, on local peers (moto + AEMM)
	bash scripts/demo.sh

fuzz: ## each IMDS parser fuzzed for FUZZTIME (default 10m)
	for f in FuzzParseInstanceAction FuzzParseRebalance FuzzParseLifecycleState FuzzParseScheduledEvents; do \
		$(GO) test ./agent/notice -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-10m} || exit 1; \
	done

clean:
	rm -rf bin dist
