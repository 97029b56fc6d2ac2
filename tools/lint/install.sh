#!/usr/bin/env bash
# Builds the pinned golangci-lint into a cache directory (only if missing or
# the wrong version) and prints the binary's path as the last stdout line.
#
# The version is pinned in exactly one place: tools/lint/go.mod. To bump:
#   cd tools/lint && go get github.com/golangci/golangci-lint/v2@vX.Y.Z && go mod tidy
#
# Usage: GOLANGCI_LINT="$(tools/lint/install.sh | tail -n1)" && "$GOLANGCI_LINT" run ./...
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pkg="github.com/golangci/golangci-lint/v2"
bin_dir="${TREATY_TOOLS_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/treaty/bin}"
bin="${bin_dir}/golangci-lint"

# Pinned version, read from tools/lint/go.mod (e.g. v2.15.0).
version="$(go -C "$here" list -m -mod=readonly -f '{{.Version}}' "$pkg")"
want="${version#v}"
# A golangci-lint built with an older Go than the one in use cannot analyze
# code using newer language features, so the Go version is part of the key.
gover="$(go env GOVERSION)"

current() {
	[[ -x "$bin" ]] || return 1
	local out
	out="$("$bin" --version 2>/dev/null)" || return 1
	[[ "$out" == *"has version ${want} built with ${gover} "* ]]
}

if ! current; then
	echo "installing golangci-lint ${version} (${gover}) into ${bin_dir}" >&2
	mkdir -p "$bin_dir"
	tmp="$(mktemp "${bin_dir}/.golangci-lint.XXXXXX")"
	trap 'rm -f "$tmp"' EXIT
	# main.date must be non-empty, otherwise golangci-lint derives its version
	# from the main module's build info (which here is tools/lint, not itself).
	go -C "$here" build -mod=readonly -trimpath -o "$tmp" \
		-ldflags "-s -w -X main.version=${want} -X main.commit=tools/lint -X main.date=pinned" \
		"${pkg}/cmd/golangci-lint"
	mv -f "$tmp" "$bin"
	trap - EXIT
	if ! current; then
		echo "error: ${bin} does not report version ${want} built with ${gover}:" >&2
		"$bin" --version >&2 || true
		exit 1
	fi
fi

echo "$bin"
