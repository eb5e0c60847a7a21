package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/provision/module"
)

// TestE2EFaults puts one real VM through the faults users and machines inflict: signals at
// every phase of `run`, a libvirtd restart under `up`, `status` and `run`, the SSH
// connection cut during a sync and a build, the guest destroyed from outside during a build
// and a load, a hung load, concurrent runs on one VM and on two VMs. After each fault the
// test checks what is left (processes, files in the guest, VM state) and that the next
// command works.
func TestE2EFaults(t *testing.T) {
	e2eEnv(t)
	name, _ := e2eVM(t, "flt")
	n := []string{"-n", name}
	root := repoRoot(t)
	if code, _, _ := runKmodvm(t, 20*time.Minute, nil, "up", "-n", name); code != 0 {
		t.Fatalf("up: exit %d", code)
	}
	run := func(t *testing.T, args ...string) (int, string, string) {
		t.Helper()
		return runKmodvm(t, 10*time.Minute, nil, append(append([]string{}, n...), args...)...)
	}
	guest := func(t *testing.T, script string) string {
		t.Helper()
		code, out, _ := run(t, "exec", "--", "sh", "-c", script)
		if code != 0 {
			t.Fatalf("exec %q: exit %d", script, code)
		}
		return out
	}
	mustRun := func(t *testing.T, args ...string) string {
		t.Helper()
		code, out, _ := run(t, args...)
		if code != 0 {
			t.Fatalf("kmodvm %s: exit %d, want 0", strings.Join(args, " "), code)
		}
		return out
	}
	// status is the VM's state and SSH port, as `kmodvm status --json` tells them.
	status := func(t *testing.T) (state, port string) {
		t.Helper()
		var st struct {
			State string `json:"state"`
			Port  int    `json:"ssh_port"`
		}
		if err := json.Unmarshal([]byte(mustRun(t, "status", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		return st.State, fmt.Sprint(st.Port)
	}
	state := func(t *testing.T) string { st, _ := status(t); return st }
	// Module trees of this test: a copy of c-hello, one with a large file (a sync that
	// takes seconds), and slow-c.
	work := t.TempDir()
	chello := copyDir(t, filepath.Join(root, "examples/c-hello"), filepath.Join(work, "c-hello"))
	big := copyDir(t, filepath.Join(root, "examples/c-hello"), filepath.Join(work, "big"))
	for i := range 4 {
		randomFile(t, filepath.Join(big, fmt.Sprintf("blob%d.bin", i)), 8<<20)
	}
	slow := filepath.Join(root, "testdata/modules/slow-c")
	// remoteSums hashes the guest's copy of dir.
	remoteSums := func(t *testing.T, dir string) map[string]string {
		t.Helper()
		remote := module.RemoteDir(dir)
		out := guest(t, "cd "+remote+" 2>/dev/null && find . -type f ! -name '.kmodvm-sync.json' -exec sha256sum {} + || true")
		got := map[string]string{}
		for l := range strings.Lines(out) {
			if f := strings.Fields(l); len(f) == 2 {
				got[strings.TrimPrefix(f[1], "./")] = f[0]
			}
		}
		return got
	}
	// converged checks the guest's copy of dir after an interrupted sync (complete=false):
	// every file there is the local one or the one it had before (prev), never a partial
	// write; after a finished sync (complete=true) it mirrors dir exactly.
	converged := func(t *testing.T, dir string, prev map[string]string, complete bool) {
		t.Helper()
		got := remoteSums(t, dir)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			sum := sha256.Sum256(data)
			want := hex.EncodeToString(sum[:])
			h, ok := got[e.Name()]
			switch {
			case ok && h != want && (complete || h != prev[e.Name()]):
				t.Errorf("guest copy of %s is neither the local file nor the earlier one: partially written", e.Name())
			case !ok && complete:
				t.Errorf("guest copy of %s is missing", e.Name())
			}
		}
		for p := range got {
			if strings.Contains(p, ".kmodvm-tmp-") {
				if complete {
					t.Errorf("a sync temporary is left in the guest: %s", p)
				}
				continue
			}
			if _, err := os.Stat(filepath.Join(dir, p)); err != nil && complete {
				t.Errorf("the guest has %s, which the local tree has not", p)
			}
		}
	}
	loaded := func(t *testing.T, mod string) bool {
		t.Helper()
		return strings.Contains(guest(t, "cut -d' ' -f1 /proc/modules"), mod+"\n")
	}
	// The phases the faults land in, and the evidence that each is under way: stall-c's
	// build stalls in stallSleep (in the toolchain root or in the guest), slow-c's init
	// sleeps (the guest lists it as Loading), a sync of big has sent a few of its 32 MiB.
	stall := filepath.Join(root, "testdata/modules/stall-c")
	const stallSleep = "sleep 173"
	guestRunning := func(t *testing.T, cmdline string) func() bool {
		return func() bool {
			out := guest(t, `for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' < "$f" 2>/dev/null; echo; done`)
			return slices.Contains(strings.Split(out, "\n"), cmdline+" ")
		}
	}
	hostStalled := whenTrue("stall-c's build is stalled in the toolchain root", hostRunning(stallSleep))
	guestStalled := func(t *testing.T) landing {
		return whenTrue("stall-c's build is stalled in the guest", guestRunning(t, stallSleep))
	}
	slowLoading := func(t *testing.T) landing {
		return whenTrue("slow-c is loading in the guest", func() bool {
			return strings.Contains(guest(t, "grep '^slow .* Loading ' /proc/modules || true"), "Loading")
		})
	}
	syncing := func(t *testing.T) landing {
		_, port := status(t)
		return whenTrue("the sync has sent 4 MiB", sshSent(port, 4<<20))
	}

	t.Run("signals during run", func(t *testing.T) {
		cases := []struct {
			phase, marker string
			at            landing
			sig           syscall.Signal
			args          []string
			says          string // what kmodvm tells about the guest's side, if it has one
			// left reports whether what the interrupted phase started is still there.
			left func() bool
		}{
			{"host build", "building in the toolchain root", hostStalled, syscall.SIGINT, []string{"run", "--build", "host", stall}, "", hostRunning(stallSleep)},
			{"guest build", "building in the guest", guestStalled(t), syscall.SIGTERM, []string{"run", "--build", "guest", stall}, "stopped the build in the guest", guestRunning(t, stallSleep)},
			{"sync", "syncing", syncing(t), syscall.SIGTERM, []string{"sync", big}, "", nil},
			{"load", "loading slow.ko", slowLoading(t), syscall.SIGINT, []string{"run", "-p", "delay_ms=60000", slow}, "stopped the load of slow in the guest", func() bool { return loaded(t, "slow") }},
		}
		for _, c := range cases {
			p, code := interruptAt(t, nil, c.marker, 5*time.Minute, c.at, c.sig, append(append([]string{}, n...), c.args...)...)
			if code != 130 || !strings.Contains(p.stderr.String(), "kmodvm: interrupted") {
				t.Errorf("%s: %s -> exit %d, want 130 and a line saying it was interrupted", c.phase, c.sig, code)
			}
			if !strings.Contains(p.stderr.String(), c.says) {
				t.Errorf("%s: kmodvm did not say %q", c.phase, c.says)
			}
			// What the phase started is stopped too (a few seconds for it to go).
			if c.left != nil && !eventually(10*time.Second, func() bool { return !c.left() }) {
				t.Errorf("%s: what the interrupted phase started still runs (or the module is still loaded)", c.phase)
			}
			if st := state(t); st != "running" {
				t.Errorf("%s: the VM is %s after the interruption", c.phase, st)
			}
		}
		converged(t, big, nil, false)
		// The next commands work and converge.
		mustRun(t, "sync", big)
		converged(t, big, nil, true)
		mustRun(t, "run", "--build", "guest", chello)
		mustRun(t, "run", "-p", "delay_ms=100", slow)
	})

	t.Run("signals during up", func(t *testing.T) {
		other, otherState := e2eVM(t, "flt-up")
		// A first up, interrupted while defining and starting, then while waiting for SSH:
		// nothing of the new VM may stay.
		booted := whenTrue("the guest runs (kmodvm waits for its SSH)", domainRunning(other))
		for _, c := range []struct {
			when string
			at   landing
			sig  syscall.Signal
		}{{"as booting began", atOnce, syscall.SIGTERM}, {"while waiting for SSH", booted, syscall.SIGINT}} {
			p, code := interruptAt(t, nil, "booting", 5*time.Minute, c.at, c.sig, "up", "-n", other)
			if code != 130 || !strings.Contains(p.stderr.String(), "kmodvm: interrupted") {
				t.Errorf("first up, %s %s: exit %d, want 130 and a line saying it was interrupted", c.sig, c.when, code)
			}
			if domainExists(other) || dirExists(otherState) {
				t.Errorf("first up, %s %s, left domain=%v state=%v", c.sig, c.when, domainExists(other), dirExists(otherState))
			}
		}
		// An up of an existing, stopped VM, interrupted while it resumes or boots: the VM
		// stays, its state is told right, and the next up finishes the job.
		if code, _, _ := runKmodvm(t, 10*time.Minute, nil, "up", "-n", other); code != 0 {
			t.Fatalf("up: exit %d", code)
		}
		if code, _, _ := runKmodvm(t, 5*time.Minute, nil, "down", "-n", other); code != 0 {
			t.Fatalf("down: exit %d", code)
		}
		// down saved the guest, so this up resumes it; interrupted once the restored guest
		// runs (SSH and the clock fix-up follow). The resume takes about a second, so up may
		// finish before the signal lands: either way libvirt and kmodvm must agree.
		if _, code := interruptAt(t, nil, "resuming", 5*time.Minute, booted, syscall.SIGINT, "up", "-n", other); code != 130 && code != 0 {
			t.Errorf("up of a saved VM interrupted while resuming: exit %d, want 130 (or 0, done first)", code)
		}
		stateMatchesLibvirt(t, other)
		if code, _, _ := runKmodvm(t, 5*time.Minute, nil, "down", "-n", other); code != 0 {
			t.Fatalf("down: exit %d", code)
		}
		// up --cold drops the save and boots: interrupted while it boots.
		if _, code := interruptAt(t, nil, "booting", 5*time.Minute, booted, syscall.SIGINT, "up", "--cold", "-n", other); code != 130 {
			t.Errorf("up --cold of a stopped VM interrupted while booting: exit %d, want 130", code)
		}
		stateMatchesLibvirt(t, other)
		if code, _, _ := runKmodvm(t, 10*time.Minute, nil, "up", "-n", other); code != 0 {
			t.Errorf("up after an interrupted up: exit %d", code)
		}
		if code, _, _ := runKmodvm(t, time.Minute, nil, "-n", other, "exec", "--", "true"); code != 0 {
			t.Errorf("exec after up: exit %d", code)
		}
		runKmodvm(t, 5*time.Minute, nil, "destroy", "-n", other)
	})

	t.Run("libvirtd restarted", func(t *testing.T) {
		// During run: the runner asks libvirt about the guest every second while it loads.
		p := startKmodvm(t, nil, append(append([]string{}, n...), "run", "-p", "delay_ms=8000", slow)...)
		p.waitFor("loading slow.ko", 5*time.Minute)
		slowLoading(t)(p)
		restartLibvirtd(t)
		// Either the new libvirtd takes the guest over and the run goes on, or it stops the
		// guest (libvirt 9.0 does when it cannot re-attach, here: cgroup v1 without
		// systemd); then kmodvm must say so, not blame the module.
		code := p.wait(5 * time.Minute)
		if code != 0 && (code != 1 || !strings.Contains(p.stderr.String(), "libvirtd stopped it")) {
			t.Errorf("run across a libvirtd restart: exit %d, want 0, or 1 saying libvirtd stopped the guest", code)
		}
		stateMatchesLibvirt(t, name)
		mustRun(t, "up")
		// During status: each call works or fails clearly, none hangs.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		codes := map[int]int{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, _, errOut := runKmodvm(t, time.Minute, nil, append(append([]string{}, n...), "status")...)
				if code != 0 && !strings.Contains(errOut, "libvirtd is not running") && !strings.Contains(errOut, "libvirt") {
					t.Errorf("status during a libvirtd restart: exit %d without saying libvirt is the cause:\n%s", code, errOut)
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
				time.Sleep(300 * time.Millisecond)
			}
		}()
		time.Sleep(2 * time.Second)
		restartLibvirtd(t)
		time.Sleep(2 * time.Second)
		close(stop)
		wg.Wait()
		t.Logf("status exits during the restart: %v", codes)
		// During up of a stopped VM that boots (down saved its state: --cold boots anyway).
		mustRun(t, "down")
		p = startKmodvm(t, nil, append([]string{"up", "--cold"}, n...)...)
		p.waitFor("booting", 5*time.Minute)
		restartLibvirtd(t)
		if code := p.wait(5 * time.Minute); code != 0 && (code != 1 || !strings.Contains(p.stderr.String(), "stopped")) {
			t.Errorf("up across a libvirtd restart: exit %d, want 0, or 1 saying the guest was stopped", code)
		}
		stateMatchesLibvirt(t, name)
		mustRun(t, "up")
		mustRun(t, "run", chello)
	})

	t.Run("ssh connection cut", func(t *testing.T) {
		for _, c := range []struct {
			phase, marker string
			args          []string
		}{
			{"sync", "syncing", []string{"sync", big}},
			{"guest build", "building in the guest", []string{"run", "--build", "guest", stall}},
		} {
			var prev map[string]string
			at := guestStalled(t)
			if c.phase == "sync" { // make the sync send everything again
				prev = remoteSums(t, big)
				for i := range 4 {
					randomFile(t, filepath.Join(big, fmt.Sprintf("blob%d.bin", i)), 8<<20)
				}
				at = syncing(t)
			}
			_, sshPort := status(t)
			p, code := faultAt(t, nil, c.marker, 5*time.Minute, at, func(*proc) { cutSSH(t, sshPort) }, append(append([]string{}, n...), c.args...)...)
			if code != 1 || !strings.Contains(p.stderr.String(), "connection") {
				t.Errorf("%s with the SSH connection cut: exit %d, want 1 and an error about the connection", c.phase, code)
			}
			if c.phase == "sync" {
				converged(t, big, prev, false)
			}
		}
		mustRun(t, "sync", big)
		converged(t, big, nil, true)
		// The next run stops the build the cut connection left in the guest.
		mustRun(t, "run", "--build", "guest", chello)
		if guestRunning(t, stallSleep)() {
			t.Errorf("the build the cut connection left in the guest still runs after the next run")
		}
	})

	t.Run("guest destroyed from outside", func(t *testing.T) {
		for _, c := range []struct {
			phase, marker string
			at            landing
			args          []string
		}{
			{"guest build", "building in the guest", guestStalled(t), []string{"-v", "run", "--build", "guest", stall}},
			{"load", "loading slow.ko", slowLoading(t), []string{"-v", "run", "-p", "delay_ms=60000", slow}},
		} {
			p, code := faultAt(t, nil, c.marker, 5*time.Minute, c.at, func(*proc) {
				if out, err := exec.Command("virsh", "-c", "qemu:///system", "destroy", e2eDomain(name)).CombinedOutput(); err != nil {
					t.Errorf("virsh destroy: %v\n%s", err, out)
				}
			}, append(append([]string{}, n...), c.args...)...)
			if code != 1 || !strings.Contains(p.stderr.String(), "stopped from outside kmodvm") {
				t.Errorf("%s with the guest destroyed: exit %d, want 1 and a report that it was stopped from outside", c.phase, code)
			}
			if st := state(t); st != "shutoff" {
				t.Errorf("after virsh destroy during the %s, the VM is %s, want shutoff (left as the user put it)", c.phase, st)
			}
			// Left stopped: run --no-up says so with the hint; run starts it, as up does.
			code, _, errOut := run(t, "run", "--no-up", chello)
			if code != 1 || !strings.Contains(errOut, "kmodvm up") {
				t.Errorf("run --no-up on the destroyed VM: exit %d, want 1 with a hint to `kmodvm up`", code)
			}
			code, _, errOut = run(t, "run", chello)
			if code != 0 || !strings.Contains(errOut, "is not running: starting it") {
				t.Errorf("run on the destroyed VM: exit %d, want 0 after starting it", code)
			}
		}
	})

	t.Run("hung load", func(t *testing.T) {
		code, out, _ := run(t, "run", "--timeout", "10s", "-p", "delay_ms=600000", slow)
		if code != 5 || !strings.Contains(out, "hung") {
			t.Errorf("a load that outlasts --timeout: exit %d, want 5 and a report that it hung", code)
		}
		if st := state(t); st != "running" {
			t.Errorf("after a hung load the VM is %s, want running (restarted)", st)
		}
		mustRun(t, "run", chello)
	})

	t.Run("concurrent runs", func(t *testing.T) {
		// Two runs on one VM: the second waits for the first, says so, and both work.
		a := startKmodvm(t, nil, append(append([]string{}, n...), "run", "-p", "delay_ms=5000", slow)...)
		a.waitFor("loading slow.ko", 5*time.Minute)
		b := startKmodvm(t, nil, append(append([]string{}, n...), "run", chello)...)
		b.waitFor("waiting for another kmodvm", time.Minute)
		if code := a.wait(5 * time.Minute); code != 0 {
			t.Errorf("first of two concurrent runs: exit %d", code)
		}
		if code := b.wait(5 * time.Minute); code != 0 {
			t.Errorf("second of two concurrent runs: exit %d", code)
		}
		// Two VMs side by side, each running a module at the same time.
		other, _ := e2eVM(t, "flt-b")
		if code, _, _ := runKmodvm(t, 10*time.Minute, nil, "up", "-n", other); code != 0 {
			t.Fatalf("up of a second VM: exit %d", code)
		}
		a = startKmodvm(t, nil, append(append([]string{}, n...), "run", "-p", "delay_ms=2000", slow)...)
		b = startKmodvm(t, nil, "-n", other, "run", "-p", "delay_ms=2000", slow)
		ca, cb := a.wait(5*time.Minute), b.wait(5*time.Minute)
		if ca != 0 || cb != 0 {
			t.Errorf("runs on two VMs side by side: exit %d and %d, want 0 and 0", ca, cb)
		}
		if !strings.Contains(b.stdout.String(), "slow: loaded") {
			t.Errorf("the second VM's run did not show its own kernel log")
		}
	})
}

// restartLibvirtd kills libvirtd and starts it again, as a package upgrade or an admin does;
// the guests keep running meanwhile.
func restartLibvirtd(t *testing.T) {
	t.Helper()
	t.Log("restarting libvirtd")
	_ = exec.Command("pkill", "-u", "0", "-x", "libvirtd").Run()
	for i := 0; exec.Command("pgrep", "-u", "0", "-x", "libvirtd").Run() == nil; i++ {
		if i > 100 {
			t.Fatal("libvirtd did not exit within 10 s of SIGTERM")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // down for a moment: kmodvm must notice
	if out, err := exec.Command("libvirtd", "-d").CombinedOutput(); err != nil {
		t.Fatalf("start libvirtd: %v\n%s", err, out)
	}
	for i := 0; exec.Command("virsh", "-c", "qemu:///system", "version").Run() != nil; i++ {
		if i > 60 {
			t.Fatal("libvirtd did not answer within 30 s of its start")
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// stateMatchesLibvirt checks that `kmodvm status` tells the state libvirt has.
func stateMatchesLibvirt(t *testing.T, name string) {
	t.Helper()
	code, out, _ := runKmodvm(t, time.Minute, nil, "-n", name, "status", "--json")
	virsh, err := exec.Command("virsh", "-c", "qemu:///system", "domstate", e2eDomain(name)).Output()
	if err != nil {
		t.Fatalf("virsh domstate: %v", err)
	}
	want := strings.ReplaceAll(strings.TrimSpace(string(virsh)), "shut off", "shutoff")
	if code != 0 || !strings.Contains(out, `"state": "`+want+`"`) {
		t.Errorf("status does not tell libvirt's state %q:\n%s", want, out)
	}
}

// cutSSH kills every TCP connection to the guest's forwarded SSH port on the host side, as a
// network failure would (ss -K: SOCK_DESTROY).
func cutSSH(t *testing.T, port string) {
	t.Helper()
	out, err := exec.Command("ss", "-K", "-tn", "dport = :"+port).CombinedOutput()
	if err != nil {
		t.Fatalf("ss -K: %v\n%s", err, out)
	}
	t.Logf("cut the SSH connections to port %s:\n%s", port, out)
	if !strings.Contains(string(out), "127.0.0.1:"+port) {
		t.Fatalf("no SSH connection to cut on port %s", port)
	}
}

// domainRunning reports whether libvirt has the VM's domain running.
func domainRunning(name string) func() bool {
	return func() bool {
		out, err := exec.Command("virsh", "-c", "qemu:///system", "domstate", e2eDomain(name)).Output()
		return err == nil && strings.TrimSpace(string(out)) == "running"
	}
}
