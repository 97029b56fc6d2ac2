# treaty's developer commands. `make test` is what CI runs (with lint).
GO ?= go

.PHONY: all test lint build e2e fuzz spire pebble clean

all: build

## test: vet, then every test with the race detector (e2e included unless -short)
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

## lint: golangci-lint at the version pinned in tools/lint/go.mod
lint:
	@GOLANGCI_LINT="$$(tools/lint/install.sh | tail -n1)" && "$$GOLANGCI_LINT" run --allow-parallel-runners ./...

## build: the treaty binary in bin/
build:
	$(GO) build -o bin/treaty ./cmd/treaty

## e2e: only the end-to-end tests (real processes, real spire-server)
e2e:
	$(GO) test -race -count=1 -v ./test/e2e/...

## fuzz: a short run of every fuzz target
fuzz:
	$(GO) test ./internal/bundle -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 30s
	$(GO) test ./internal/bundle -run '^$$' -fuzz '^FuzzParsePEM$$' -fuzztime 30s
	$(GO) test ./internal/config -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 30s

## spire: build (or reuse) spire-server and spire-agent for interop tests
spire:
	tools/spire/build.sh

## pebble: build (or reuse) the Pebble ACME test server
pebble:
	tools/pebble/build.sh

clean:
	rm -rf bin

# Side-by-side benchmarks: treaty, SPIRE (built by `make spire`) and a bare
# Go HTTPS server on loopback; writes bench/RESULTS.md and bench/results.json.
.PHONY: bench
bench: spire
	go run ./bench -out bench
