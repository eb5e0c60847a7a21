#!/usr/bin/env bash
# What a CI job does with a kernel module, the steps of docs/ci.md's workflow (and of .ci/run,
# on examples/rust-hello, so the recipe is run where it is written): host setup, kmodvm
# installed or built, doctor, up, run --json, test --junit, and always destroy. Exits with
# kmodvm's exit code (README, "Exit codes"): run's when it is not 0, else test's. Reads no
# stdin and needs no terminal.
#
#   bash scripts/ci-module.sh [MODULE_DIR [OUT_DIR]]   the job; OUT_DIR gets run.json, junit.xml
#   bash scripts/ci-module.sh --cache-key              print the cache key only (kmodvm cache key)
#
# MODULE_DIR defaults to examples/rust-hello of this repository, OUT_DIR to ./kmodvm-out.
# kmodvm reads ./kmodvm.yaml as usual: run the script from the directory that holds it.
#
# Environment:
#   KMODVM_VERSION  source (default): build kmodvm from this repository (make build);
#                   anything else: go install github.com/kmodvm/kmodvm/cmd/kmodvm@$KMODVM_VERSION
#   KMODVM_NAME     the VM's name (default ci); it is destroyed at the end
#   KMODVM_TESTS    1 (default): also run `kmodvm test --junit`; 0 for a module with no KUnit suite
#   KMODVM_HOME     where kmodvm keeps its cache and state (the directory a CI caches)
set -euo pipefail
exec </dev/null
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=${KMODVM_VERSION:-source}
name=${KMODVM_NAME:-ci}
tests=${KMODVM_TESTS:-1}
key_only=false
if [ "${1:-}" = --cache-key ]; then
	key_only=true
	shift
fi
if (($# > 2)); then
	echo "usage: ci-module.sh [MODULE_DIR [OUT_DIR]] | --cache-key" >&2
	exit 2
fi
dir=${1:-$repo/examples/rust-hello}
out=${2:-kmodvm-out}

# kmodvm itself: this checkout's, or a released one. Progress goes to stderr: with
# --cache-key, stdout is the key alone.
if [ "$version" = source ]; then
	make -s -C "$repo" build >&2
	kmodvm=$repo/bin/kmodvm
else
	# A released version is installed outside any module: a GOFLAGS like CI's -mod=readonly
	# would refuse that.
	GOFLAGS='' go install "github.com/kmodvm/kmodvm/cmd/kmodvm@$version" >&2
	kmodvm=$(go env GOBIN)
	kmodvm=${kmodvm:-$(go env GOPATH)/bin}/kmodvm
fi
if $key_only; then
	exec "$kmodvm" cache key
fi

# The one-time host setup (idempotent; asks sudo for what is missing). It puts the user in
# the libvirt group, which this login does not have yet: carry on under that group.
bash "$repo/scripts/deps.sh"
if [ "$(id -u)" != 0 ] && ! id -nG | tr ' ' '\n' | grep -qx libvirt && id -nG "$(id -un)" | tr ' ' '\n' | grep -qx libvirt; then
	echo "==> joining the libvirt group for this job" >&2
	exec sg libvirt -c "$(printf '%q ' bash "${BASH_SOURCE[0]}" "$@")"
fi

mkdir -p "$out"
echo "==> kmodvm $version ($kmodvm), module $dir, results in $out"
echo "==> cache key: $("$kmodvm" cache key)"
"$kmodvm" doctor || echo "==> doctor found problems (above); up says whether they matter"

up=false
# shellcheck disable=SC2317 # called by the EXIT trap
destroy() {
	if $up; then
		"$kmodvm" -n "$name" destroy || echo "==> could not destroy VM $name (above)" >&2
	fi
}
trap destroy EXIT
trap 'exit 130' INT TERM

up=true
"$kmodvm" -n "$name" up
code=0
"$kmodvm" -n "$name" run --json "$dir" >"$out/run.json" || code=$?
echo "==> kmodvm run: exit $code (the result: $out/run.json)"
if [ "$tests" = 1 ]; then
	tcode=0
	"$kmodvm" -n "$name" test --junit "$out/junit.xml" "$dir" || tcode=$?
	echo "==> kmodvm test: exit $tcode (JUnit: $out/junit.xml)"
	if [ "$code" = 0 ]; then
		code=$tcode
	fi
fi
exit "$code"
