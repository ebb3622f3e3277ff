#!/usr/bin/env bash
# Runs every native fuzz target of the module, one `go test -fuzz` per target
# (Go fuzzes one target per invocation), and stops at the first failure.
#
#   FUZZTIME      how long each target fuzzes (default 60s; `make test` uses 2s)
#   FUZZPARALLEL  fuzzing workers per target (default 1: two shared cores, and
#                 the coordinator needs some of the second)
#   FUZZPKGS      packages to search (default ./...)
#   FUZZMATCH     only targets whose name matches this extended regex
#
# The generated corpus goes to Go's cache ($(go env GOCACHE)/fuzz), never to
# the repository; a failing input is written by Go to the package's
# testdata/fuzz/<Target>/ for you to commit with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-60s}
FUZZPARALLEL=${FUZZPARALLEL:-1}
FUZZMATCH=${FUZZMATCH:-.}
read -r -a pkgs <<<"${FUZZPKGS:-./...}"

# `go test -list` prints a package's matching names, then "ok  <pkg> <time>".
targets=()
names=()
while IFS= read -r line; do
	case $line in
	Fuzz*) names+=("$line") ;;
	"ok "*)
		pkg=$(awk '{print $2}' <<<"$line")
		for n in "${names[@]}"; do
			[[ $n =~ $FUZZMATCH ]] && targets+=("$pkg $n")
		done
		names=()
		;;
	"?"* | "") ;;
	*)
		echo "fuzz.sh: unexpected output of go test -list: $line" >&2
		exit 1
		;;
	esac
done < <($GO test -list '^Fuzz' "${pkgs[@]}")

if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz.sh: no fuzz targets found" >&2
	exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, ${FUZZTIME} each, ${FUZZPARALLEL} worker(s)"
# count prints how many inputs a testdata/fuzz/<Target> folder holds.
count() {
	if [ -d "$1" ]; then
		find "$1" -type f | wc -l
	else
		echo 0
	fi
}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$SECONDS
i=0
for t in "${targets[@]}"; do
	i=$((i + 1))
	read -r pkg name <<<"$t"
	echo "[$i/${#targets[@]}] $pkg $name"
	dir=$($GO list -f '{{.Dir}}' "$pkg")/testdata/fuzz/$name
	before=$(count "$dir")
	ok=false
	if $GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -parallel "$FUZZPARALLEL" "$pkg" >"$log" 2>&1; then
		ok=true
	elif [ "$(count "$dir")" -eq "$before" ] && grep -q "context deadline exceeded" "$log" &&
		! grep -qE "panic:|Failing input written|--- FAIL: .* \(.*\)$" <(grep -v "context deadline exceeded" "$log" | grep -v "^--- FAIL: $name "); then
		# Go's fuzzer can report "context deadline exceeded" when -fuzztime
		# ends while a worker is mid-input (a race in Go's fuzzer): no failing
		# input is written and nothing else failed. Not a finding.
		echo "fuzz.sh: $name: the fuzzer stopped on its own deadline without a failing input (not a finding)"
		ok=true
	fi
	if ! $ok; then
		cat "$log"
		echo "fuzz.sh: FAIL $pkg $name (a failing input is in $($GO list -f '{{.Dir}}' "$pkg")/testdata/fuzz/$name/;" \
			"reproduce with: go test -run '^$name\$' $pkg)" >&2
		exit 1
	fi
done
echo "fuzz.sh: ${#targets[@]} targets passed in $((SECONDS - start))s"
