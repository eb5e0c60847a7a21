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
while read -r pkg name; do
	t0=$(date +%s)
	rc=0
	out=$(go test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1) || rc=$?
	t1=$(date +%s)
	execs=$(sed -n 's/.*execs: \([0-9]*\).*/\1/p' <<<"$out" | tail -n1)
	result=ok
	if [ "$rc" -ne 0 ]; then
		result=FAILED
		failed+=("$name ($pkg)")
		printf '%s\n' "$out" >&2
	fi
	printf '%-22s %-36s %10s execs %4ss  %s\n' "$name" "${pkg#github.com/kmodvm/kmodvm/}" "${execs:-0}" "$((t1 - t0))" "$result"
done <<<"$targets"
echo "fuzz: $(($(date +%s) - start))s in all"
if [ "${#failed[@]}" -gt 0 ]; then
	printf 'fuzz: failed: %s\n' "${failed[@]}" >&2
	echo "fuzz: hint: the failing inputs are in testdata/fuzz/ of those packages; fix the bug, then commit them as regression cases" >&2
	exit 1
fi
