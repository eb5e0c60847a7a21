#!/usr/bin/env bash
# make bench: kmodvm's speed against baselines measured in the same run, alternating, so a
# busy machine slows both sides alike. Prints medians and ratios; never asserts.
#
#   BENCH_N=5 bash scripts/bench.sh [up|restore|kernel|kernel-full|loop|classify|load|bindings|all]
#
# up:     `kmodvm up --cold` from a stopped, defined VM to SSH-ready vs a bare
#         qemu-system-x86_64 boot of the same kernel, disk, init and cmdline to SSH-ready;
#         image build cached.
# restore: a new VM's `up --cold` vs its `up` by restoring its pristine save (both after a
#         destroy, alternating); `down` + `up` resuming the VM's own save; recovery after a
#         module panics the guest (`run testdata/modules/panic-c`), by restoring the
#         pristine save vs by a reboot (the pristine saves moved aside).
# kernel: kernel build cache hit; rebuild after one fragment change.
# kernel-full: a cold `kmodvm kernel build` vs the same unpack + Kconfig + make run by hand
#         in the same root (two full builds: ~15 min here); KFULL_ORDER=hand-first swaps
#         the order, to see what a cold page cache costs the first one.
# loop:   warm `kmodvm run` of the Rust example after a one-line change vs a hand-written
#         scp/ssh script vs the irreducible make + insmod; sync of 1 changed file among
#         1,000 vs rsync over ssh.
# classify: the kernel-log classifier's ns/line on a 10k-line log (the baseline) and a
#         160k-line one, alternating; a ratio near 1 means time linear in the log's length.
# load:   `kmodvm logs -f` vs `ssh ... cat /dev/kmsg` following 100,000 paced kernel log
#         lines from testdata/modules/spam-c (time to the last line, peak RSS), then a
#         30,000-line burst that overwrites records before any reader gets them (lines
#         delivered; whether the reader is still following afterwards).
# bindings: `kmodvm bindings` on an index the size of a real kernel's (9,500 fns, 3,100
#         structs, 18,000 consts): load it and look one name up, or match a pattern (the Go
#         benchmarks of provision/bindindex; goal: well under a second).
# BENCH_VM names the bench VM (default: bench).
set -euo pipefail
cd "$(dirname "$0")/.."
# Where the CLI keeps its state and caches (see README).
if [ -n "${KMODVM_HOME:-}" ]; then
	STATE="$KMODVM_HOME/state" CACHE="$KMODVM_HOME/cache"
else
	STATE="${XDG_STATE_HOME:-$HOME/.local/state}/kmodvm" CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kmodvm"
fi
N=${BENCH_N:-5}
WHAT=${1:-all}
K="$PWD/bin/kmodvm"
VM=${BENCH_VM:-bench}
# Always (it is incremental): a bin/kmodvm an older tree left would be benched instead.
go build -o "$K" ./cmd/kmodvm

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
field() { sed -n -e "s/^ *\"$1\": \"\(.*\)\",\{0,1\}$/\1/p" -e "s/^ *\"$1\": \([0-9][0-9]*\),\{0,1\}$/\1/p" "$2" | head -n1; }
tmp=$(mktemp -d)
started=
cleanup() {
	if [ -n "${qpid:-}" ]; then kill "$qpid" 2>/dev/null || true; fi
	# bench_restore moves the pristine saves aside for a while: put them back.
	if [ -d "$CACHE/saves.bench-off" ] && [ ! -e "$CACHE/saves" ]; then mv "$CACHE/saves.bench-off" "$CACHE/saves"; fi
	# Only a VM this run brought up: a mode without one must not remove a "bench" VM
	# that someone else's run is using.
	[ -n "$started" ] && { "$K" -n "$VM" destroy >/dev/null 2>&1 || true; }
	rm -rf "$tmp"
}
trap cleanup EXIT

inst="$STATE/vms/$VM/instance.json"
# start_vm brings the bench VM up and reads what the baselines need from its state; SSH is
# plain ssh to it, with its pinned host key.
start_vm() {
	started=1
	"$K" -n "$VM" up >/dev/null
	kernel=$(field kernel "$inst")
	base=$(field base_disk "$inst")
	key=$(field client_key "$inst")
	hostpub=$(field host_pub "$inst")
	cmdline=$(field cmdline "$inst")
	accel=$(field accel "$inst")
	mem=$(field memory_mib "$inst")
	port=$(field ssh_port "$inst")
	echo "[127.0.0.1]:$port $(cat "$hostpub")" >"$tmp/known_hosts"
	SSH=(ssh -q -o BatchMode=yes -o UserKnownHostsFile="$tmp/known_hosts" -i "$key" -p "$port" root@127.0.0.1)
}

bench_up() {
	start_vm
	echo "== up: kmodvm up (stopped, defined VM -> SSH ready) vs bare qemu boot -> SSH ready ($accel, N=$N)"
	local port=$((20000 + RANDOM % 20000))
	echo "[127.0.0.1]:$port $(cat "$hostpub")" >"$tmp/known_hosts"
	: >"$tmp/up"; : >"$tmp/bare"
	for i in $(seq 1 "$N"); do
		"$K" -n "$VM" down >/dev/null
		t0=$(now); "$K" -n "$VM" up --cold >/dev/null; t1=$(now)
		echo "$t1 - $t0" | bc >>"$tmp/up"
		"$K" -n "$VM" down >/dev/null

		rm -f "$tmp/ov.qcow2"; qemu-img create -q -f qcow2 -F qcow2 -b "$base" "$tmp/ov.qcow2"
		local acc=(-accel tcg -cpu qemu64); [ "$accel" = kvm ] && acc=(-accel kvm -cpu host)
		t0=$(now)
		qemu-system-x86_64 "${acc[@]}" -M pc -m "$mem" -smp 1 -display none -no-reboot \
			-kernel "$kernel" -append "$cmdline" \
			-drive file="$tmp/ov.qcow2",format=qcow2,if=virtio \
			-device virtio-rng-pci \
			-netdev user,id=n0,restrict=on,ipv6=off,hostfwd=tcp:127.0.0.1:$port-:22 \
			-device virtio-net-pci,netdev=n0 -serial file:"$tmp/bare-console.log" &
		qpid=$!
		until ssh -q -o BatchMode=yes -o ConnectTimeout=2 -o UserKnownHostsFile="$tmp/known_hosts" \
			-o StrictHostKeyChecking=yes -i "$key" -p "$port" root@127.0.0.1 true 2>/dev/null; do
			sleep 0.1
		done
		t1=$(now)
		kill "$qpid"; wait "$qpid" 2>/dev/null || true; qpid=
		echo "$t1 - $t0" | bc >>"$tmp/bare"
	done
	local mu mb; mu=$(median <"$tmp/up"); mb=$(median <"$tmp/bare")
	echo "kmodvm up: median ${mu}s  ($(tr '\n' ' ' <"$tmp/up"))"
	echo "bare qemu: median ${mb}s  ($(tr '\n' ' ' <"$tmp/bare"))"
	echo "ratio up/bare: $(ratio "$mu" "$mb")  (goal <= 1.15)"
	t0=$(now); "$K" image build >/dev/null; t1=$(now)
	echo "image build, cached: $(echo "$t1 - $t0" | bc)s"
}

bench_kernel() {
	echo "== kernel: cache hit and one-fragment rebuild"
	t0=$(now); "$K" kernel build >/dev/null; t1=$(now)
	echo "kernel build, cache hit: $(echo "$t1 - $t0" | bc)s"
	mkdir -p "$tmp/kproj"
	printf 'kernel:\n  fragments: ["CONFIG_DUMMY=m"]\n' >"$tmp/kproj/kmodvm.yaml"
	t0=$(now); (cd "$tmp/kproj" && "$K" kernel build >/dev/null); t1=$(now)
	echo "kernel rebuild after one fragment change (incremental, same tree): $(echo "$t1 - $t0" | bc)s"
}

bench_kernel_full() {
	echo "== kernel-full: cold kmodvm kernel build vs the same work by hand in the same root (order: ${KFULL_ORDER:-kmodvm-first})"
	local home="$tmp/home"
	mkdir -p "$home/cache"
	cp -al "$CACHE/images" "$home/cache/images" # the root, hardlinked: no rebuild
	local root
	# shellcheck disable=SC2012 # cache paths are hex digests
	root=$(ls -d "$CACHE"/images/roots/*/root | head -n1)
	# The seed config kmodvm feeds Kconfig, from `kernel config` in the usual cache.
	"$K" kernel config >/dev/null
	# shellcheck disable=SC2012 # cache paths are hex digests, and ls -t picks the newest
	cp "$(ls -td "$CACHE"/kernels/trees/*/ | head -n1)/.kmodvm-allconfig" "$tmp/allconfig"
	local tk th
	by_kmodvm() {
		t0=$(now); KMODVM_HOME="$home" "$K" kernel build >/dev/null; t1=$(now)
		tk=$(echo "$t1 - $t0" | bc)
		echo "kmodvm kernel build (unpack, gate, config, verify, make, install, stage): ${tk}s"
		rm -rf "$home"
	}
	by_hand() {
		mkdir -p "$tmp/hand"
		t0=$(now)
		# shellcheck disable=SC2016 # expanded by the shell inside, not here
		bwrap --bind "$root" / --bind "$tmp/hand" /usr/src/kmodvm/linux --ro-bind "$tmp/allconfig" /kmodvm-allconfig \
			--proc /proc --dev /dev --tmpfs /tmp --unshare-pid --die-with-parent --clearenv \
			--setenv HOME /root --setenv PATH /usr/sbin:/usr/bin:/sbin:/bin --chdir /usr/src/kmodvm/linux \
			sh -c 'tar -xf /usr/src/linux-source-*.tar.xz --strip-components=1 &&
				KCONFIG_ALLCONFIG=/kmodvm-allconfig make -s LLVM=1 ARCH=x86_64 allnoconfig &&
				make -s LLVM=1 ARCH=x86_64 -j$(nproc) all' >/dev/null
		t1=$(now)
		th=$(echo "$t1 - $t0" | bc)
		echo "by hand (unpack, config, make): ${th}s"
		rm -rf "$tmp/hand"
	}
	if [ "${KFULL_ORDER:-}" = hand-first ]; then by_hand; by_kmodvm; else by_kmodvm; by_hand; fi
	echo "ratio kmodvm/hand: $(ratio "$tk" "$th")  (goal <= 1.02)"
}

bench_restore() {
	echo "== restore: new VM up --cold vs up by restoring its pristine save; down+up; recovery both ways (N=$N)"
	started=1
	"$K" -n "$VM" destroy >/dev/null 2>&1 || true
	"$K" -n "$VM" up >/dev/null # a cold boot that makes the VM's pristine save (or finds it)
	: >"$tmp/cold"; : >"$tmp/rest"; : >"$tmp/own"
	for i in $(seq 1 "$N"); do
		"$K" -n "$VM" destroy >/dev/null
		t0=$(now); "$K" -n "$VM" up --cold >/dev/null; t1=$(now)
		echo "$t1 - $t0" | bc >>"$tmp/cold"
		"$K" -n "$VM" destroy >/dev/null
		t0=$(now); "$K" -n "$VM" up >/dev/null 2>"$tmp/up.err"; t1=$(now)
		grep -q "restoring $VM from its pristine save" "$tmp/up.err" ||
			{ echo "up did not restore the pristine save:" >&2; cat "$tmp/up.err" >&2; exit 1; }
		echo "$t1 - $t0" | bc >>"$tmp/rest"
		"$K" -n "$VM" down >/dev/null
		t0=$(now); "$K" -n "$VM" up >/dev/null; t1=$(now)
		echo "$t1 - $t0" | bc >>"$tmp/own"
	done
	local mc mr mo; mc=$(median <"$tmp/cold"); mr=$(median <"$tmp/rest"); mo=$(median <"$tmp/own")
	echo "up --cold (new VM): median ${mc}s  ($(tr '\n' ' ' <"$tmp/cold"))"
	echo "up by restore (new VM, pristine save): median ${mr}s  ($(tr '\n' ' ' <"$tmp/rest"))"
	echo "up after down (own save): median ${mo}s  ($(tr '\n' ' ' <"$tmp/own"))"
	echo "ratio restore/cold: $(ratio "$mr" "$mc")  (goal <= 0.3)"

	# Recovery: the whole run of a module that panics the guest (exit 5), which includes
	# bringing the guest back; with the pristine saves moved aside the guest reboots.
	cp -r testdata/modules/panic-c "$tmp/panic"
	"$K" -n "$VM" run "$tmp/panic" >/dev/null 2>&1 || true # warm: builds
	: >"$tmp/rr"; : >"$tmp/rb"
	local rc
	for i in $(seq 1 "$N"); do
		t0=$(now); rc=0; "$K" -n "$VM" run --json "$tmp/panic" >"$tmp/r.json" 2>/dev/null || rc=$?; t1=$(now)
		if [ "$rc" != 5 ] || ! grep -q '"guest_recovered_by": "restored"' "$tmp/r.json"; then
			echo "run did not recover by restore (exit $rc)" >&2; exit 1
		fi
		echo "$t1 - $t0" | bc >>"$tmp/rr"
		mv "$CACHE/saves" "$CACHE/saves.bench-off"
		t0=$(now); rc=0; "$K" -n "$VM" run --json "$tmp/panic" >"$tmp/r.json" 2>/dev/null || rc=$?; t1=$(now)
		mv "$CACHE/saves.bench-off" "$CACHE/saves"
		if [ "$rc" != 5 ] || ! grep -q '"guest_recovered_by": "rebooted"' "$tmp/r.json"; then
			echo "run did not recover by reboot (exit $rc)" >&2; exit 1
		fi
		echo "$t1 - $t0" | bc >>"$tmp/rb"
	done
	local a b; a=$(median <"$tmp/rr"); b=$(median <"$tmp/rb")
	echo "run panic-c, recovered by restore: median ${a}s  ($(tr '\n' ' ' <"$tmp/rr"))"
	echo "run panic-c, recovered by reboot: median ${b}s  ($(tr '\n' ' ' <"$tmp/rb"))"
	echo "ratio restore/reboot: $(ratio "$a" "$b")"
}

bench_loop() {
	echo "== loop: warm kmodvm run after a one-line change vs scp/ssh script vs make+insmod (N=$N)"
	start_vm
	cp -r examples/rust-hello "$tmp/mod"
	local where=host; [ "$accel" = kvm ] && where=guest
	"$K" -n "$VM" run --build "$where" "$tmp/mod" >/dev/null
	# The irreducible part where kmodvm builds: make (host: in the toolchain root against the
	# same build tree; guest: over ssh), then insmod + rmmod of the .ko in the guest.
	cp -r examples/rust-hello "$tmp/irr"
	local root kdir; root=$(field toolchain_root "$inst"); kdir=$(field kdir "$inst")
	irreducible() {
		if [ "$where" = host ]; then
			bwrap --bind "$root" / --ro-bind "$kdir" /usr/src/kmodvm/linux --bind "$tmp/irr" /root/irr \
				--proc /proc --dev /dev --tmpfs /tmp --unshare-pid --die-with-parent --clearenv \
				--setenv HOME /root --setenv PATH /usr/sbin:/usr/bin:/sbin:/bin --chdir /root/irr \
				make -s -C /usr/src/kmodvm/linux M=/root/irr LLVM=1 modules >/dev/null
			"${SSH[@]}" 'cat > /root/irr.ko && insmod /root/irr.ko && rmmod rust_hello' <"$tmp/irr/rust_hello.ko"
		else
			"${SSH[@]}" 'cat > /root/irr/rust_hello.rs' <"$tmp/irr/rust_hello.rs"
			# shellcheck disable=SC2016 # expanded by the shell inside, not here
			"${SSH[@]}" 'make -s -C /lib/modules/$(uname -r)/build M=/root/irr LLVM=1 modules >/dev/null && insmod /root/irr/rust_hello.ko && rmmod rust_hello'
		fi
	}
	[ "$where" = host ] || scp -q -r -o UserKnownHostsFile="$tmp/known_hosts" -i "$key" -P "$port" "$tmp/irr" root@127.0.0.1:/root/irr
	irreducible # warm
	: >"$tmp/k"; : >"$tmp/s"; : >"$tmp/i"
	for i in $(seq 1 "$N"); do
		echo "// change $i" >>"$tmp/mod/rust_hello.rs"
		t0=$(now); "$K" -n "$VM" run --build "$where" "$tmp/mod" >/dev/null; t1=$(now)
		echo "$t1 - $t0" | bc >>"$tmp/k"

		echo "// script change $i" >>"$tmp/mod/rust_hello.rs"
		t0=$(now)
		scp -q -r -o UserKnownHostsFile="$tmp/known_hosts" -i "$key" -P "$port" "$tmp/mod" root@127.0.0.1:/root/script-mod
		# shellcheck disable=SC2016 # expanded by the shell inside, not here
		"${SSH[@]}" 'make -s -C /lib/modules/$(uname -r)/build M=/root/script-mod LLVM=1 modules >/dev/null'
		"${SSH[@]}" 'insmod /root/script-mod/rust_hello.ko'
		"${SSH[@]}" 'dmesg | tail -n 5 >/dev/null'
		"${SSH[@]}" 'rmmod rust_hello'
		t1=$(now)
		echo "$t1 - $t0" | bc >>"$tmp/s"

		echo "// irreducible change $i" >>"$tmp/irr/rust_hello.rs"
		t0=$(now); irreducible; t1=$(now)
		echo "$t1 - $t0" | bc >>"$tmp/i"
	done
	local mk ms mi; mk=$(median <"$tmp/k"); ms=$(median <"$tmp/s"); mi=$(median <"$tmp/i")
	echo "kmodvm run ($where build): median ${mk}s  ($(tr '\n' ' ' <"$tmp/k"))"
	echo "scp/ssh script (guest build): median ${ms}s  ($(tr '\n' ' ' <"$tmp/s"))"
	echo "irreducible ($where make + insmod + rmmod): median ${mi}s  ($(tr '\n' ' ' <"$tmp/i"))"
	echo "ratio run/script: $(ratio "$mk" "$ms")  (goal <= 0.5)"
	echo "ratio run/irreducible: $(ratio "$mk" "$mi")  (goal <= 1.10)"

	echo "== sync: 1 changed file among 1,000: kmodvm sync vs rsync over ssh (N=$N)"
	mkdir -p "$tmp/tree"
	printf 'obj-m := x.o\n' >"$tmp/tree/Kbuild"
	for d in $(seq 0 9); do mkdir -p "$tmp/tree/d$d"; for f in $(seq 0 98); do head -c 2048 /dev/urandom >"$tmp/tree/d$d/f$f.c"; done; done
	"$K" -n "$VM" sync "$tmp/tree" >/dev/null
	"${SSH[@]}" 'command -v rsync >/dev/null' || { echo "rsync is not in the guest image: add it to image.packages to compare"; return; }
	rsync -a -e "ssh -q -o UserKnownHostsFile=$tmp/known_hosts -i $key -p $port" "$tmp/tree/" root@127.0.0.1:/root/rsync-tree/
	: >"$tmp/ks"; : >"$tmp/rs"
	for i in $(seq 1 "$N"); do
		head -c 2048 /dev/urandom >"$tmp/tree/d3/f7.c"
		t0=$(now); "$K" -n "$VM" sync "$tmp/tree" >/dev/null; t1=$(now); echo "$t1 - $t0" | bc >>"$tmp/ks"
		t0=$(now); rsync -a -e "ssh -q -o UserKnownHostsFile=$tmp/known_hosts -i $key -p $port" "$tmp/tree/" root@127.0.0.1:/root/rsync-tree/; t1=$(now); echo "$t1 - $t0" | bc >>"$tmp/rs"
	done
	local a b; a=$(median <"$tmp/ks"); b=$(median <"$tmp/rs")
	echo "kmodvm sync: median ${a}s; rsync over ssh: median ${b}s; ratio $(ratio "$a" "$b") (goal <= 1.0)"
}

bench_classify() {
	echo "== classify: ns/line on 10k and 160k lines of kernel log (10k is the baseline), alternating (N=$N)"
	go test -c -o "$tmp/kmsg.test" ./provision/kmsg
	: >"$tmp/c10000"; : >"$tmp/c160000"
	for i in $(seq 1 "$N"); do
		for n in 10000 160000; do
			(cd provision/kmsg && "$tmp/kmsg.test" -test.run '^$' -test.bench "^BenchmarkClassify\$/^lines=$n\$" -test.benchtime 1s) |
				awk '{for (i = 2; i <= NF; i++) if ($i == "ns/line") print $(i-1)}' >>"$tmp/c$n"
		done
	done
	local a b; a=$(median <"$tmp/c10000"); b=$(median <"$tmp/c160000")
	echo "10k lines:  median ${a} ns/line  ($(tr '\n' ' ' <"$tmp/c10000"))"
	echo "160k lines: median ${b} ns/line  ($(tr '\n' ' ' <"$tmp/c160000"))"
	echo "ratio 160k/10k: $(ratio "$b" "$a")  (goal <= 1.10: linear)"
}

bench_bindings() {
	echo "== bindings: load a real-sized bindings index and answer one query (N=$N runs of 20)"
	go test -run '^$' -bench '^BenchmarkQuery' -benchtime 20x -count "$N" ./provision/bindindex |
		awk '$1 ~ /^BenchmarkQuery/ {sub(/-[0-9]+$/, "", $1); t[$1] = t[$1] " " $3 / 1e6} END {for (k in t) print k ": ms per query:" t[k]}'
}

bench_load() {
	echo "== load: kmodvm logs -f vs ssh cat /dev/kmsg, 100,000 paced kernel log lines (N=$N), then a burst"
	start_vm
	"$K" -n "$VM" run -p lines=0 testdata/modules/spam-c >/dev/null
	local ko; ko=$("$K" -n "$VM" sync testdata/modules/spam-c | sed -n 's/.* -> \(.*\): .*/\1/p')/spam.ko
	# follow READER LINES PARAMS: start the reader (kmodvm or ssh), load spam.ko, wait for its
	# last line or for the reader to end; sets took, got (numbered lines received), rss, alive.
	follow() {
		local reader=$1 lines=$2 params=$3 out="$tmp/follow.out" pid
		if [ "$reader" = kmodvm ]; then
			"$K" -n "$VM" logs -f >"$out" 2>"$tmp/follow.err" &
		else
			"${SSH[@]}" 'cat /dev/kmsg' >"$out" 2>"$tmp/follow.err" &
		fi
		pid=$!
		until [ -s "$out" ]; do sleep 0.1; done
		t0=$(now)
		"${SSH[@]}" "rmmod spam 2>/dev/null; insmod $ko lines=$lines $params"
		alive=yes
		until tail -n 20 "$out" | grep -q "spam: done $lines\$"; do
			kill -0 "$pid" 2>/dev/null || { alive=no; break; }
			[ "$(echo "$(now) - $t0 > 300" | bc)" = 1 ] && { alive="no last line within 300 s"; break; }
			sleep 0.1
		done
		t1=$(now)
		took=$(echo "$t1 - $t0" | bc)
		got=$(grep -c "spam: line [0-9]*/$lines\$" "$out" || true)
		rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo -)
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	}
	# counted FILE: a run that reached the last line counts towards the median, one whose
	# reader ended before it (cat /dev/kmsg does at the first overwritten record) does not.
	counted() {
		if [ "$alive" = yes ]; then echo "$took" >>"$tmp/$1"; else echo " (reader ended: $alive; not counted)"; fi
	}
	: >"$tmp/lk"; : >"$tmp/lc"
	local i lines=100000 # one more each time: every run needs a last line of its own
	for i in $(seq 1 "$N"); do
		lines=$((lines + 1)); follow kmodvm "$lines" "debug=1 batch=100 pause_us=10000"
		echo "kmodvm logs -f: ${took}s, $got of $lines lines, peak RSS ${rss} kB$(counted lk)"
		lines=$((lines + 1)); follow ssh "$lines" "debug=1 batch=100 pause_us=10000"
		echo "ssh cat /dev/kmsg: ${took}s, $got of $lines lines, peak RSS (ssh client) ${rss} kB$(counted lc)"
	done
	local a b; a=$(median <"$tmp/lk"); b=$(median <"$tmp/lc")
	echo "100,000 paced lines to the last one: kmodvm logs -f median ${a}s ($(awk -v t="$a" 'BEGIN {printf "%.0f", 100000/t}') lines/s); ssh cat median ${b}s; ratio $(ratio "$a" "$b")"
	follow kmodvm 30000 "debug=1 pause_us=0"
	echo "30,000-line burst: kmodvm logs -f got $got lines, reported $(sed -n 's/^==> lost \([0-9]*\) .*/\1/p' "$tmp/follow.err" | awk '{n += $1} END {print n + 0}') records lost, still following: $alive"
	follow ssh 30001 "debug=1 pause_us=0" # 30,001: the burst above left its last line in the log
	echo "30,000-line burst: ssh cat got $got lines, still following: $alive"
}

case "$WHAT" in
up) bench_up ;;
restore) bench_restore ;;
kernel) bench_kernel ;;
kernel-full) bench_kernel_full ;;
loop) bench_loop ;;
classify) bench_classify ;;
load) bench_load ;;
bindings) bench_bindings ;;
all) bench_up; bench_restore; bench_kernel; bench_loop; bench_classify; bench_load; bench_bindings ;;
*) echo "usage: $0 [up|restore|kernel|kernel-full|loop|classify|load|bindings|all]" >&2; exit 2 ;;
esac
