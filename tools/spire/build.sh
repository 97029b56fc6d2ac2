#!/usr/bin/env bash
# Builds the pinned SPIRE release (spire-server and spire-agent) for treaty's
# interop tests into a cache directory, only if they are missing or the wrong
# version, and prints that directory as the last line of stdout. Progress and
# errors go to stderr.
#
# The version is pinned in exactly one place: tools/spire/go.mod. To bump:
#   cd tools/spire && go get github.com/spiffe/spire@vX.Y.Z && go mod tidy
#
# Cache dir: $TREATY_SPIRE_DIR, default
#   ${XDG_CACHE_HOME:-$HOME/.cache}/treaty/spire-<version>
#
# Usage: SPIRE_DIR="$(tools/spire/build.sh | tail -n1)" && "$SPIRE_DIR/spire-server" --version
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="github.com/spiffe/spire"

# Pinned version (e.g. v1.15.3), read straight from go.mod so the warm path
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
want="${version#v}"

dir="${TREATY_SPIRE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/treaty/spire-${version}}"

current() {
	[[ -x "$dir/spire-server" && -x "$dir/spire-agent" ]] || return 1
	local out
	out="$("$dir/spire-server" --version 2>&1)" || return 1
	[[ "$out" == "$want" ]] || return 1
	out="$("$dir/spire-agent" --version 2>&1)" || return 1
	[[ "$out" == "$want" ]]
}

if ! current; then
	echo "building SPIRE ${version} (spire-server, spire-agent) into ${dir}; a cold build takes several minutes" >&2
	mkdir -p "$dir"
	# Leftovers of builds killed hard (SIGKILL) long ago.
	find "$dir" -maxdepth 1 -name '.build.*' -mmin +240 -exec rm -rf {} + 2>/dev/null || true
	# Build next to the final location (same filesystem) so the rename below
	# is atomic: an interrupted build never leaves a half-written binary.
	tmp="$(mktemp -d "${dir}/.build.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	# gittag is what release builds set (see SPIRE's Makefile); without it
	# --version reports "<version>-dev-unk". The sqlite3 datastore needs cgo.
	CGO_ENABLED=1 go -C "$here" build -mod=readonly -trimpath -o "$tmp/" \
		-ldflags "-s -w -X ${mod}/pkg/common/version.gittag=${want} -X ${mod}/pkg/common/version.githash=${version}" \
		"${mod}/cmd/spire-server" "${mod}/cmd/spire-agent"
	# Each rename is atomic, so a binary in $dir is always complete.
	mv -f "$tmp/spire-agent" "$dir/spire-agent"
	mv -f "$tmp/spire-server" "$dir/spire-server"
	rm -rf "$tmp"
	trap - EXIT
	if ! current; then
		echo "error: binaries in ${dir} do not report version ${want}:" >&2
		"$dir/spire-server" --version >&2 || true
		"$dir/spire-agent" --version >&2 || true
		exit 1
	fi
	echo "built SPIRE ${version} into ${dir}" >&2
fi

echo "$dir"
