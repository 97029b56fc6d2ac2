#!/usr/bin/env bash
# Measures test coverage per package, counting the end-to-end tests too, and
# writes the table to docs/coverage.md (or the file given as $1).
#
# The unit tests run with -coverpkg=./..., so a package's figure counts the
# statements any test reached, not only its own package's tests. The e2e
# tests build the treaty binary with -cover (TREATY_COVERDIR, see
# test/e2e/harness_test.go); every server and CLI process they start writes
# its counters when it exits. go tool covdata merges the two.
#
# Usage: tools/cover/cover.sh [output.md]   (make cover)
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
out="${1:-docs/coverage.md}"
module="$(go list -m)"

# Packages that handle keys, bundles or invites: the aim is 80 % or more.
trust=(adminapi agentapi bundle bundledir bundleendpoint bundlewire ca datastore/postgres datastore/sqlite datastore/sqlstore federation invite keystore nodeattest signedbundle spiregw workloadapi)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/unit" "$work/e2e"

echo "cover: unit tests" >&2
mapfile -t pkgs < <(go list ./... | grep -v "^$module/test/")
failed=()
go test -count=1 -cover -coverpkg=./... "${pkgs[@]}" -args -test.gocoverdir="$work/unit" 2>&1 | tee "$work/unit.log" >&2 || failed+=("unit")

echo "cover: end-to-end tests" >&2
# Every e2e test runs, spire-server and Pebble included (built once, cached).
TREATY_SPIRE_DIR="${TREATY_SPIRE_DIR:-$(tools/spire/build.sh | tail -n1)}"
TREATY_PEBBLE_DIR="${TREATY_PEBBLE_DIR:-$(tools/pebble/build.sh | tail -n1)}"
export TREATY_SPIRE_DIR TREATY_PEBBLE_DIR
TREATY_COVERDIR="$work/e2e" go test -count=1 -timeout 30m -cover -coverpkg=./... ./test/e2e/ -args -test.gocoverdir="$work/e2e" 2>&1 | tee "$work/e2e.log" >&2 || failed+=("end-to-end")

# percent prints "package percent" for the packages under internal/ and cmd/.
percent() {
	go tool covdata percent -i="$1" | awk -v m="$module/" '
		$1 ~ "^" m "(internal|cmd)/" { p = $1; sub(m, "", p); v = $3; sub("%", "", v); print p, v }' | sort
}
percent "$work/unit" >"$work/unit.txt"
percent "$work/unit,$work/e2e" >"$work/all.txt"

is_trust() {
	local p
	for p in "${trust[@]}"; do [[ "$1" == "internal/$p" ]] && return 0; done
	return 1
}

low=()
{
	echo "# Test coverage"
	echo
	echo "Written by \`make cover\` (tools/cover/cover.sh) on $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD); do not edit by hand."
	echo
	echo "Statements reached per package: by the unit tests (\`go test -coverpkg=./...\`, so a"
	echo "package's figure counts every test that reaches it), and by the unit and end-to-end"
	echo "tests together (the e2e tests run the treaty binary built with \`-cover\`; a process"
	echo "killed with SIGKILL reports nothing, so crash paths count less than they run)."
	echo "Packages that handle keys, bundles or invites are marked; the aim for them is 80 % or more."
	echo
	echo "| package | unit | unit + e2e | keys, bundles, invites |"
	echo "|---|---:|---:|:---:|"
	while read -r pkg all; do
		unit="$(awk -v p="$pkg" '$1 == p { print $2 }' "$work/unit.txt")"
		mark=""
		if is_trust "$pkg"; then
			mark="yes"
			if awk -v v="$all" 'BEGIN { exit !(v < 80) }'; then
				mark="**yes, below 80 %**"
				low+=("$pkg ($all %)")
			fi
		fi
		echo "| $pkg | ${unit:-0.0} % | $all % | $mark |"
	done <"$work/all.txt"
	echo
	if ((${#low[@]})); then
		echo "Below the aim: ${low[*]}."
	else
		echo "Every package that handles keys, bundles or invites is at 80 % or more."
	fi
	if ((${#failed[@]})); then
		echo
		echo "**Some ${failed[*]} tests failed in this run: the figures undercount.** Failed:"
		echo
		{ grep -h -- '^--- FAIL' "$work/unit.log" "$work/e2e.log" || true; } | sed 's/^--- FAIL: /- /'
	fi
} >"$out"
cat "$out"
if ((${#failed[@]})); then
	echo "cover: ${failed[*]} tests failed; $out says so" >&2
	exit 1
fi
