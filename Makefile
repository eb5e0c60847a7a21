# kmodvm — see README.md. demo, build and unit run as an ordinary user (deps asks for sudo
# once when the host lacks something); test, e2e and bench run as root (they make a user,
# restart libvirtd and cut connections).
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
# Image and kernel caches live outside the clone, where the CLI keeps them by default
# (KMODVM_HOME/cache, else $XDG_CACHE_HOME/kmodvm, else ~/.cache/kmodvm), so every run on
# this machine (and CI) reuses them. The tests look there too.
KMODVM_CACHE_DIR := $(shell if [ -n "$$KMODVM_HOME" ]; then echo "$$KMODVM_HOME/cache"; else echo "$${XDG_CACHE_HOME:-$$HOME/.cache}/kmodvm"; fi)
export KMODVM_CACHE_DIR
# The image package's own end-to-end test shares the CLI's image cache.
export KMODVM_TEST_CACHE ?= $(KMODVM_CACHE_DIR)/images
BIN := bin/kmodvm

.PHONY: all deps build test unit fuzz e2e bench demo lint clean
all: build

deps:
	bash scripts/deps.sh

build:
	go build -o $(BIN) ./cmd/kmodvm

# The whole suite: unit tests, every fuzz target for FUZZTIME (5 s here, so that CI's run
# from nothing stays within its hour; `make fuzz` gives each 15 s), then the tests against a
# real libvirtd and QEMU guest, faults and load included (they build the image and the Rust
# kernel on first use; cached afterwards). See docs/reliability.md. On failure,
# scripts/e2e.sh repeats what the failed tests said at the end of its output.
test: deps
	go test ./...
	FUZZTIME=$${FUZZTIME:-5s} bash scripts/fuzz.sh
	bash scripts/e2e.sh

unit:
	go test ./...

# Every fuzz target for FUZZTIME (default 15s) each; see scripts/fuzz.sh.
fuzz:
	bash scripts/fuzz.sh

e2e: deps
	bash scripts/e2e.sh

bench: deps build
	bash scripts/bench.sh

# End to end on built-in defaults: image, Rust kernel, VM, the Rust example loaded and its
# kernel log printed.
demo: deps build
	$(BIN) up
	$(BIN) run examples/rust-hello

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change: $$out" >&2; exit 1; fi
	go vet ./...
	staticcheck ./...
	# The scripts kmodvm embeds and runs in the guest (go:embed, next to their Go code) and ours.
	shellcheck .ci/run $$(git ls-files '*.sh')

clean:
	rm -rf bin
