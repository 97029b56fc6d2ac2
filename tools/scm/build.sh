#!/usr/bin/env bash
# Builds the pinned spire-controller-manager release for treaty's interop
# tests into a cache directory, only if it is missing or the wrong version,
# and prints that directory as the last line of stdout. Progress and errors
# go to stderr.
#
# The version is pinned in exactly one place: tools/scm/go.mod. To bump:
#   cd tools/scm && go get github.com/spiffe/spire-controller-manager@vX.Y.Z && go mod tidy
#
# Cache dir: $TREATY_SCM_DIR, default
#   ${XDG_CACHE_HOME:-$HOME/.cache}/treaty/scm-<version>
#
# Usage: SCM_DIR="$(tools/scm/build.sh | tail -n1)" && "$SCM_DIR/spire-controller-manager" -h
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="github.com/spiffe/spire-controller-manager"
bin="spire-controller-manager"

# Pinned version (e.g. v0.6.4), read straight from go.mod so the warm path
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

dir="${TREATY_SCM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/treaty/scm-${version}}"

# spire-controller-manager has no version flag: -h proves the binary runs
# (it exits 0 after printing its flags), and the build's marker file,
# written last, proves which version it is.
current() {
	[[ -x "$dir/$bin" ]] || return 1
	"$dir/$bin" -h >/dev/null 2>&1 || return 1
	[[ "$(cat "$dir/$bin.version" 2>/dev/null)" == "$version" ]]
}

if ! current; then
	echo "building spire-controller-manager ${version} into ${dir}; a cold build takes a few minutes" >&2
	mkdir -p "$dir"
	# Leftovers of builds killed hard (SIGKILL) long ago.
	find "$dir" -maxdepth 1 -name '.build.*' -mmin +240 -exec rm -rf {} + 2>/dev/null || true
	# Build next to the final location (same filesystem) so the renames below
	# are atomic: an interrupted build never leaves a half-written binary.
	tmp="$(mktemp -d "${dir}/.build.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	# The manager's main package is cmd/, so name the output explicitly.
	CGO_ENABLED=0 go -C "$here" build -mod=readonly -trimpath -ldflags "-s -w" \
		-o "$tmp/$bin" "${mod}/cmd"
	echo "$version" >"$tmp/$bin.version"
	# The marker goes last so it never vouches for an older binary.
	rm -f "$dir/$bin.version"
	mv -f "$tmp/$bin" "$dir/$bin"
	mv -f "$tmp/$bin.version" "$dir/$bin.version"
	rm -rf "$tmp"
	trap - EXIT
	if ! current; then
		echo "error: ${dir}/${bin} is not a working spire-controller-manager ${version}" >&2
		exit 1
	fi
	echo "built spire-controller-manager ${version} into ${dir}" >&2
fi

echo "$dir"
