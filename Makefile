# treaty's developer commands. `make test` is what CI runs (with lint).
GO ?= go

.PHONY: all test test-deploy lint build e2e fuzz spire pebble clean release image

all: build

## test: vet, then every test with the race detector (e2e included unless -short)
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	$(MAKE) test-deploy

## test-deploy: what ships, in its own modules: the release build (reproducible, checksums, SBOM)
## and the OCI image (tools/release), the Helm chart rendered and decoded (tools/chart). Without -race:
## nothing of ours runs concurrently there, and the race detector makes compressing the image
## minutes slower. tools/chart parses with this checkout's internal/config (-mod=mod: its go.sum
## follows the main module's)
test-deploy:
	cd tools/release && $(GO) vet ./... && $(GO) test -count=1 -timeout 30m ./...
	cd tools/chart && $(GO) vet -mod=mod ./... && $(GO) test -mod=mod -count=1 ./...

## lint: no build outputs tracked (tools/check-tracked.sh), then golangci-lint at the version pinned in tools/lint/go.mod
lint:
	tools/check-tracked.sh
	@GOLANGCI_LINT="$$(tools/lint/install.sh | tail -n1)" && "$$GOLANGCI_LINT" run --allow-parallel-runners ./...

## build: the treaty binary in bin/
build:
	$(GO) build -o bin/treaty ./cmd/treaty

## e2e: only the end-to-end tests (real processes, real spire-server)
e2e:
	$(GO) test -race -count=1 -v ./test/e2e/...

## fuzz: every fuzz target (as go test -list finds them) for FUZZTIME each (CI runs a short smoke of
## 20000 inputs each: a count, because a duration can end in a spurious "context deadline exceeded"
## failure on a busy machine with Go 1.26, go.dev/issue/75804)
FUZZTIME ?= 30s
fuzz:
	@set -e; \
	list="$$($(GO) test -vet=off -list '^Fuzz' ./...)"; \
	targets="$$(printf '%s\n' "$$list" | awk '/^Fuzz/ { fns = fns " " $$1; next } /^ok/ { n = split(fns, f, " "); for (i = 1; i <= n; i++) print $$2 ":" f[i]; fns = "" }')"; \
	[ -n "$$targets" ] || { echo "fuzz: go test -list found no fuzz target" >&2; exit 1; }; \
	for t in $$targets; do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME); \
	done

## cover: coverage per package of the unit and e2e tests together (tools/cover/cover.sh), written to docs/coverage.md
.PHONY: cover
cover:
	tools/cover/cover.sh

## spire: build (or reuse) spire-server and spire-agent for interop tests
spire:
	tools/spire/build.sh

## pebble: build (or reuse) the Pebble ACME test server
pebble:
	tools/pebble/build.sh

clean:
	rm -rf bin dist

# VERSION names a release; default: git describe of HEAD (v* tags).
VERSION ?= $(shell git describe --tags --always --match 'v*' HEAD)

## release: dist/ with treaty for linux and darwin on amd64 and arm64 (tar.gz), a CycloneDX SBOM of each,
## the OCI image of the linux ones and SHA256SUMS, from a clean checkout of HEAD; built twice, the second
## time from scratch, and refused unless both give the same bytes
## (RELEASE_PLATFORMS=linux/amd64,linux/arm64 for linux only)
RELEASE_PLATFORMS ?= all
release:
	rm -rf dist
	cd tools/release && $(GO) run . -out $(CURDIR)/dist -version $(VERSION) -platforms $(RELEASE_PLATFORMS) -image -check

## image: dist/image/treaty_VERSION_image.oci.tar for this machine's architecture, without a container
## engine (skopeo copy oci-archive:… docker://…, or podman load -i …)
image:
	rm -rf dist/image
	cd tools/release && $(GO) run . -out $(CURDIR)/dist/image -version $(VERSION) -platforms linux/$$($(GO) env GOARCH) -image

## vulncheck: known vulnerabilities in dependencies (needs vuln.go.dev)
.PHONY: vulncheck
vulncheck:
	$(GO) run golang.org/x/vuln/cmd/govulncheck@v1.9.0 ./...

## soak: crash, bad-partner and disk-full soak (minutes; counts in bench/soak.json, folded into RESULTS.md by make bench);
## SOAK=short runs tens of rounds, well under a minute per test, and reports nothing (CI)
SOAK ?= 1
.PHONY: soak
soak: spire
	TREATY_SOAK=$(SOAK) TREATY_E2E=1 $(GO) test -count=1 -timeout 60m -v -run 'TestSoak' ./test/e2e/

# Side-by-side benchmarks: treaty, SPIRE (built by `make spire`) and a bare
# Go HTTPS server on loopback; writes bench/RESULTS.md and bench/results.json.
.PHONY: bench
bench: spire
	go run ./bench -out bench
