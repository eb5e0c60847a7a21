#!/usr/bin/env bash
# make fuzz: run every Go fuzz target of the module for a bounded time, one after another,
# and print how many inputs each one tried. Targets are found with `go test -list`, so a new
# Fuzz* function runs without editing this script. Each target first runs its committed
# corpus (testdata/fuzz/<Name>/ in its package) and the inputs earlier runs on this machine
# found interesting (Go's fuzz cache), then new inputs for FUZZTIME.
#
#   FUZZTIME=15s bash scripts/fuzz.sh
#
# When a target fails, Go writes the input to testdata/fuzz/<Name>/ in its package and this
# script prints the failure and exits 1: fix the bug and commit that file, so `go test` runs
# it from then on.
#
# One failure is not a failing input: Go's fuzz coordinator (go1.26 and older, fixed in
# go1.27: https://go.dev/issue/75804) can report a bare "context deadline exceeded" when the
# -fuzztime deadline fires while a worker is busy, and writes no input. It is reported here
# as "ok (deadline race)" and does not fail the run; any other failure, or any new file in
# testdata/fuzz/<Name>/, does.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-15s}

# `go test -list` prints a package's matching tests, then "ok <package> <time>".
targets=$(go test -list '^Fuzz' ./... |
	awk '/^Fuzz/ {names[++n] = $1; next} /^ok / {for (i = 1; i <= n; i++) print $2, names[i]; n = 0}')
if [ -z "$targets" ]; then
	echo "fuzz: no Fuzz* functions found" >&2
	exit 1
fi

start=$(date +%s)
failed=()
echo "== fuzz: $(wc -l <<<"$targets") targets, $FUZZTIME each"
# inputs DIR: the files in DIR (Go's saved failing inputs), one per line, or nothing.
inputs() {
	if [ -d "$1" ]; then
		find "$1" -maxdepth 1 -type f | sort
	fi
}
# deadline_race NAME OUTPUT: OUTPUT's only failure of NAME is the coordinator's bare
# "context deadline exceeded" (the lines between "--- FAIL: NAME" and "FAIL").
deadline_race() {
	local said
	said=$(awk -v name="$1" '
		$0 ~ "^--- FAIL: " name " " {in_fail = 1; next}
		in_fail && /^FAIL$/ {exit}
		in_fail {sub(/^[ \t]+/, ""); print}' <<<"$2")
	[ "$said" = "context deadline exceeded" ]
}

while read -r pkg name; do
	corpus="$(go list -f '{{.Dir}}' "$pkg")/testdata/fuzz/$name"
	before=$(inputs "$corpus")
	t0=$(date +%s)
	rc=0
	out=$(go test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1) || rc=$?
	t1=$(date +%s)
	execs=$(sed -n 's/.*execs: \([0-9]*\).*/\1/p' <<<"$out" | tail -n1)
	result=ok
	if [ "$rc" -ne 0 ]; then
		if [ "$(inputs "$corpus")" = "$before" ] && deadline_race "$name" "$out"; then
			result="ok (deadline race, no failing input; go.dev/issue/75804)"
		else
			result=FAILED
			failed+=("$name ($pkg)")
			printf '%s\n' "$out" >&2
		fi
	fi
	printf '%-22s %-36s %10s execs %4ss  %s\n' "$name" "${pkg#github.com/kmodvm/kmodvm/}" "${execs:-0}" "$((t1 - t0))" "$result"
done <<<"$targets"
echo "fuzz: $(($(date +%s) - start))s in all"
if [ "${#failed[@]}" -gt 0 ]; then
	printf 'fuzz: failed: %s\n' "${failed[@]}" >&2
	echo "fuzz: hint: the failing inputs are in testdata/fuzz/ of those packages; fix the bug, then commit them as regression cases" >&2
	exit 1
fi
