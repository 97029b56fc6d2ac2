#!/usr/bin/env bash
# Refuses build outputs in git: fails, naming each file and why, when a file
# in the index (what the next commit would hold) is
#   - larger than 1 MiB,
#   - a compiled binary (ELF, Mach-O or PE header), or
#   - tracked as executable (mode 100755) without a #! line.
# Build outputs belong in .gitignore; `make lint` runs this first.
#
# Usage: tools/check-tracked.sh   (from anywhere inside the repository)
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

max_bytes=$((1024 * 1024))
bad=0

fail() {
	echo "check-tracked: $1: $2" >&2
	bad=1
}

# head4 prints the first four bytes of a blob as hex, e.g. "7f454c46".
# od stops reading after four bytes, so git may die of SIGPIPE: not an error.
head4() {
	{ git cat-file blob "$1" || true; } | od -An -tx1 -N4 | tr -d ' \n'
}

while IFS=$'\t' read -r -d '' meta path; do
	read -r mode sha _ <<<"$meta"
	case "$mode" in
	100644 | 100755) ;;
	*) continue ;; # symlinks and submodules hold no content of their own
	esac
	size="$(git cat-file -s "$sha")"
	if ((size > max_bytes)); then
		fail "$path" "${size} bytes, more than the 1 MiB allowed for a tracked file (a build output? add it to .gitignore and git rm --cached it)"
	fi
	magic="$(head4 "$sha")"
	kind=""
	case "$magic" in
	7f454c46) kind="ELF" ;;
	feedface | feedfacf | cefaedfe | cffaedfe | cafebabe) kind="Mach-O" ;;
	4d5a*) kind="PE (Windows)" ;;
	esac
	if [[ -n "$kind" ]]; then
		fail "$path" "${kind} executable (a build output? add it to .gitignore and git rm --cached it)"
	elif [[ "$mode" == 100755 && "$magic" != 2321* ]]; then
		fail "$path" "tracked as executable (mode 100755) but is not a script with a #! line (git update-index --chmod=-x, or remove it if it is a build output)"
	fi
done < <(git ls-files --stage -z)

if ((bad)); then
	echo "check-tracked: tracked files above must not be committed" >&2
	exit 1
fi
