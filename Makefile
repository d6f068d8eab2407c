# spot-agent: the common tasks. `make test` is what CI runs (through .ci/run).
SHELL := /bin/bash
GO ?= go
# go.mod requires Go 1.26.10: 1.26.8 (the machine's) has ten standard-library
# vulnerabilities that 1.26.9 and 1.26.10 fix; govulncheck finds none with
# 1.26.10 (scripts/check-vulns.sh). GOTOOLCHAIN=auto lets the go command fetch
# that toolchain from the module proxy when the machine's Go is older (Debian's
# Go installs default to GOTOOLCHAIN=local, which refuses with a clear error).
export GOTOOLCHAIN ?= auto
BIN := bin/spot-agent
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# The commit's date, not the build's: two builds of a commit are the same.
DATE ?= $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo unknown)
LDFLAGS := -s -w -buildid= -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)

.PHONY: build build-instance test lint unit package boot vulns demo bench drill fuzz clean

build: ## the full static binary in bin/ (run, bootstrap, status, teardown, install)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/spot-agent

build-instance: ## the on-instance binary the packages ship (no bootstrap, status, teardown)
	CGO_ENABLED=0 $(GO) build -tags agentonly -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/spot-agent

# staticcheck is a tool of the module, as ec2-metadata-mock is: go.mod pins its
# version and go.sum its code; fetched once, it runs offline from then on.
lint: ## gofmt, go vet, staticcheck, shellcheck, markdownlint
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: the files above need formatting'; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags agentonly ./cmd/spot-agent
	$(GO) tool staticcheck ./...
	$(GO) tool staticcheck -tags agentonly ./cmd/spot-agent
	$(GO) vet -tags boot ./internal/boot
	$(GO) tool staticcheck -tags boot ./internal/boot
	shellcheck $$(git ls-files '*.sh') .ci/run
	bash scripts/markdownlint.sh

unit: ## every Go test, race detector on
	$(GO) test -race -count=1 -p 1 -timeout 40m ./...

package: ## the release built offline (goreleaser snapshot in dist/) and checked: lintian, contents, unit, user-data
	bash scripts/check-packaging.sh

boot: ## the package from `make package` installed by bootstrap's user-data on a booted Debian 12 (systemd-nspawn, cloud-init, IMDS at 169.254.169.254), as root
	$(GO) test -tags boot -count=1 -v -timeout 30m ./internal/boot

vulns: ## govulncheck with an offline database built from golang.org/x/vulndb
	bash scripts/check-vulns.sh

test: lint unit package boot vulns ## everything CI checks

demo: ## one spot interruption, end to end, on local peers (moto + AEMM)
	bash scripts/demo.sh

bench: ## benchmarks against nginx and httpd; writes BENCHMARKS.md (about 10 minutes)
	$(GO) run ./internal/bench -o BENCHMARKS.md

drill: ## the drills on the ALB stand-in (lags of 0, 15 and 30 s side by side), the interruption drill ten times, and a fleet of 100 interrupted at once; CSV and plots in docs/drill
	mkdir -p docs/drill
	DRILL_RUNS=10 DRILL_AGENTS=100 DRILL_OUT=$(CURDIR)/docs/drill $(GO) test -count=1 -timeout 60m -v ./internal/drill | grep -E '^ *(--- |ok|FAIL|PASS)|_test.go:[0-9]+: '

fuzz: ## each IMDS parser, the poll connection's reader of answers (against net/http's) and the webhook body's placeholders fuzzed for FUZZTIME (default 10m)
	for f in FuzzParseInstanceAction FuzzParseRebalance FuzzParseLifecycleState FuzzParseScheduledEvents; do \
		$(GO) test ./agent/notice -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-10m} -fuzzminimizetime 100x || exit 1; \
	done
	$(GO) test ./agent/imds -run '^$$' -fuzz '^FuzzReadPollResponse$$' -fuzztime $${FUZZTIME:-10m} -fuzzminimizetime 100x
	$(GO) test ./agent/notify -run '^$$' -fuzz '^FuzzBody$$' -fuzztime $${FUZZTIME:-10m} -fuzzminimizetime 100x

clean:
	rm -rf bin dist
