#!/usr/bin/env bash
# Builds the pinned Pebble release (pebble and pebble-challtestsrv) for
# treaty's ACME tests into a cache directory, only if they are missing or the
# wrong version, and prints that directory as the last line of stdout.
# Progress and errors go to stderr.
#
# The version is pinned in exactly one place: tools/pebble/go.mod. To bump:
#   cd tools/pebble && go get github.com/letsencrypt/pebble/v2@vX.Y.Z && go mod tidy
#
# Cache dir: $TREATY_PEBBLE_DIR, default
#   ${XDG_CACHE_HOME:-$HOME/.cache}/treaty/pebble-<version>
#
# Usage: PEBBLE_DIR="$(tools/pebble/build.sh | tail -n1)" && "$PEBBLE_DIR/pebble" -version
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="github.com/letsencrypt/pebble/v2"

# Pinned version (e.g. v2.10.1), read straight from go.mod so the warm path
# needs neither the module cache nor the network.
version="$(awk -v m="$mod" '
	$1 == "require" && $2 == m { print $3; exit }
	$1 == "require" && $2 == "(" { blk = 1; next }
	blk && $1 == ")" { blk = 0; next }
	blk && $1 == m { print $2; exit }
' "$here/go.mod")"
if [[ -z "$version" ]]; then
	echo "error: cannot find ${mod} in ${here}/go.mod" >&2
	exit 1
fi

dir="${TREATY_PEBBLE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/treaty/pebble-${version}}"

current() {
	[[ -x "$dir/pebble" && -x "$dir/pebble-challtestsrv" ]] || return 1
	local out
	# pebble prints "Pebble version: <version>" (set by -ldflags below).
	out="$("$dir/pebble" -version 2>&1)" || return 1
	[[ "$out" == "Pebble version: ${version}" ]] || return 1
	# pebble-challtestsrv has no -version flag: -h proves it runs (exit 0),
	# and the build's marker file, written last, proves which version it is.
	"$dir/pebble-challtestsrv" -h >/dev/null 2>&1 || return 1
	[[ "$(cat "$dir/pebble-challtestsrv.version" 2>/dev/null)" == "$version" ]]
}

if ! current; then
	echo "building Pebble ${version} (pebble, pebble-challtestsrv) into ${dir}; a cold build takes under a minute" >&2
	mkdir -p "$dir"
	# Leftovers of builds killed hard (SIGKILL) long ago.
	find "$dir" -maxdepth 1 -name '.build.*' -mmin +240 -exec rm -rf {} + 2>/dev/null || true
	# Build next to the final location (same filesystem) so the renames below
	# are atomic: an interrupted build never leaves a half-written binary.
	tmp="$(mktemp -d "${dir}/.build.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	# main.version is what Pebble's release workflow sets; without it
	# -version prints "dev". Pebble is pure Go.
	CGO_ENABLED=0 go -C "$here" build -mod=readonly -trimpath -o "$tmp/" \
		-ldflags "-s -w -X main.version=${version}" \
		"${mod}/cmd/pebble" "${mod}/cmd/pebble-challtestsrv"
	echo "$version" >"$tmp/pebble-challtestsrv.version"
	# Each rename is atomic, so a file in $dir is always complete; the marker
	# goes last so it never vouches for an older challtestsrv binary.
	rm -f "$dir/pebble-challtestsrv.version"
	mv -f "$tmp/pebble-challtestsrv" "$dir/pebble-challtestsrv"
	mv -f "$tmp/pebble" "$dir/pebble"
	mv -f "$tmp/pebble-challtestsrv.version" "$dir/pebble-challtestsrv.version"
	rm -rf "$tmp"
	trap - EXIT
	if ! current; then
		echo "error: binaries in ${dir} are not a working Pebble ${version}:" >&2
		"$dir/pebble" -version >&2 || true
		exit 1
	fi
	echo "built Pebble ${version} into ${dir}" >&2
fi

echo "$dir"
