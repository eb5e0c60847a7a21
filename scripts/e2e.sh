#!/usr/bin/env bash
# The end-to-end tests (real libvirtd, real QEMU guests), as `make test` and `make e2e` run
# them. Their -v log is long (every command's output), and a CI page often shows only its
# tail; so on failure this repeats, last, what each failed test said: the --- FAIL lines and
# every test message that is not a command transcript, each with its continuation lines.
# The whole log stays in $E2E_LOG (default: $TMPDIR/kmodvm-e2e.log).
set -uo pipefail
cd "$(dirname "$0")/.." || exit
log=${E2E_LOG:-${TMPDIR:-/tmp}/kmodvm-e2e.log}
KMODVM_E2E=1 go test -p 1 -parallel 2 -count=1 -timeout 80m -v -run 'E2E' ./cmd/kmodvm ./images ./vm "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" != 0 ]; then
	echo
	echo "==> the e2e tests failed (exit $rc); what the failed tests said (whole log: $log):"
	# A message is "    file_test.go:N: text" followed by lines indented deeper. Command
	# transcripts ("kmodvm ... -> exit N (T s)"), slog lines and MEASURE lines are context, not
	# failures; they are left out with their continuation lines.
	awk '
		/^--- FAIL|^    --- FAIL|^FAIL/ { print; keep = 0; next }
		/^ *[A-Za-z0-9_]+_test\.go:[0-9]+: / {
			keep = !($0 ~ / -> exit -?[0-9]+ \(|level=|MEASURE /)
			if (keep) { n = 0; print }
			next
		}
		/^=== / { keep = 0; next }
		keep && /^        / && n < 25 { print; n++ }
	' "$log"
fi
exit "$rc"
