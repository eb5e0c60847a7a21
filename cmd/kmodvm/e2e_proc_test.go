package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The fault tests run kmodvm as a separate process, as a user or a CI script does, so they
// can send it real signals and see what it leaves behind when it exits.

var (
	cliBinOnce sync.Once
	cliBin     string
	cliBinErr  error
)

// kmodvmBinary builds the CLI once per test run.
func kmodvmBinary(t *testing.T) string {
	t.Helper()
	cliBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kmodvm-e2e-bin-")
		if err != nil {
			cliBinErr = err
			return
		}
		cliBin = filepath.Join(dir, "kmodvm")
		out, err := exec.Command("go", "build", "-o", cliBin, ".").CombinedOutput()
		if err != nil {
			cliBinErr = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if cliBinErr != nil {
		t.Fatal(cliBinErr)
	}
	return cliBin
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a kmodvm process started by a test, in a process group of its own.
type proc struct {
	t        *testing.T
	args     []string
	cmd      *exec.Cmd
	stdout   lockedBuffer
	stderr   lockedBuffer
	done     chan struct{}
	code     int
	started  time.Time
	finished time.Duration
}

// startKmodvm starts kmodvm with args; env entries are added to the test's environment.
func startKmodvm(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, args: args, done: make(chan struct{}), started: time.Now()}
	p.cmd = exec.Command(kmodvmBinary(t), args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		if err != nil && p.code == -1 {
			p.code = 128 + int(p.cmd.ProcessState.Sys().(syscall.WaitStatus).Signal())
		}
		p.finished = time.Since(p.started)
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	return p
}

// waitFor waits until stderr (progress) or stdout contains s; the test fails if kmodvm exits
// first or it takes longer than d.
func (p *proc) waitFor(s string, d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for {
		if strings.Contains(p.stderr.String(), s) || strings.Contains(p.stdout.String(), s) {
			return
		}
		select {
		case <-p.done:
			p.t.Fatalf("kmodvm %s exited (%d) before printing %q:\nstdout:\n%s\nstderr:\n%s", strings.Join(p.args, " "), p.code, s, p.stdout.String(), p.stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("kmodvm %s did not print %q within %s:\nstderr:\n%s", strings.Join(p.args, " "), s, d, p.stderr.String())
		}
	}
}

// signal sends sig to kmodvm alone (not its process group, as a terminal would): what kmodvm
// started must stop because kmodvm stops it.
func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	p.t.Logf("sending %s to kmodvm %s (%.1f s after start)", sig, strings.Join(p.args, " "), time.Since(p.started).Seconds())
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// wait waits for kmodvm to exit (a hang fails the test after d) and returns its exit code.
// Then nothing kmodvm started may still run: its process group must be empty.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGQUIT) // goroutine dump into stderr
		time.Sleep(time.Second)
		p.t.Fatalf("kmodvm %s hangs: no exit within %s\nstderr:\n%s", strings.Join(p.args, " "), d, p.stderr.String())
	}
	p.t.Logf("kmodvm %s -> exit %d (%.1f s)\nstdout:\n%s\nstderr:\n%s", strings.Join(p.args, " "), p.code, p.finished.Seconds(), p.stdout.String(), p.stderr.String())
	p.assertNoStragglers()
	return p.code
}

// assertNoStragglers checks that no process of kmodvm's group outlives it (bwrap, make,
// qemu-img, ssh...), allowing a few seconds for processes being killed to go.
func (p *proc) assertNoStragglers() {
	p.t.Helper()
	pgid := p.cmd.Process.Pid
	for range 50 {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, _ := exec.Command("ps", "-eo", "pid,pgid,args").Output()
	var left []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 2 && f[1] == strconv.Itoa(pgid) {
			left = append(left, sc.Text())
		}
	}
	p.t.Errorf("processes kmodvm started outlive it:\n%s", strings.Join(left, "\n"))
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// A landing says where in the phase kmodvm announced a fault lands; it returns once there.
type landing func(p *proc)

// atOnce lands on the marker itself: kmodvm prints it as it enters a phase that lasts.
func atOnce(*proc) {}

// whenTrue lands once cond holds, polled: the evidence that the phase is under way (a
// process seen running, bytes seen sent). It fails the test if kmodvm exits first or cond
// does not hold within two minutes.
func whenTrue(what string, cond func() bool) landing {
	return func(p *proc) {
		p.t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for !cond() {
			select {
			case <-p.done:
				p.t.Fatalf("kmodvm %s exited (%d) before %s:\nstderr:\n%s", strings.Join(p.args, " "), p.code, what, p.stderr.String())
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				p.t.Fatalf("kmodvm %s: not %s within 2m:\nstderr:\n%s", strings.Join(p.args, " "), what, p.stderr.String())
			}
		}
		p.t.Logf("%s (%.1f s after start)", what, time.Since(p.started).Seconds())
	}
}

// faultAt starts kmodvm with args, waits until it prints marker (at most markerWait) and
// the landing is reached, does fault to it or its world, and returns it once it exited (a
// hang fails the test after two minutes) with its exit code.
func faultAt(t *testing.T, env []string, marker string, markerWait time.Duration, at landing, fault func(*proc), args ...string) (*proc, int) {
	t.Helper()
	p := startKmodvm(t, env, args...)
	p.waitFor(marker, markerWait)
	at(p)
	fault(p)
	return p, p.wait(2 * time.Minute)
}

// interruptAt is faultAt with a signal to kmodvm as the fault.
func interruptAt(t *testing.T, env []string, marker string, markerWait time.Duration, at landing, sig syscall.Signal, args ...string) (*proc, int) {
	t.Helper()
	return faultAt(t, env, marker, markerWait, at, func(p *proc) { p.signal(sig) }, args...)
}

// hostRunning reports whether a process runs on this machine whose command line is
// exactly cmdline (pgrep -fx; toolchain-root processes are visible from the host).
func hostRunning(cmdline string) func() bool {
	return func() bool { return exec.Command("pgrep", "-fx", cmdline).Run() == nil }
}

// hostNamed reports whether a process runs on this machine whose name is one of names
// (pgrep -x): a compiler of a kernel build, tar unpacking, apt fetching.
func hostNamed(names ...string) func() bool {
	return func() bool { return exec.Command("pgrep", "-x", strings.Join(names, "|")).Run() == nil }
}

// sshSent reports whether the connections to the forwarded SSH port have carried at least
// n bytes to the guest (the largest bytes_acked ss shows): a sync is mid-transfer.
func sshSent(port string, n int64) func() bool {
	acked := regexp.MustCompile(`bytes_acked:(\d+)`)
	return func() bool {
		out, _ := exec.Command("ss", "-tinH", "dport = :"+port).Output()
		for _, m := range acked.FindAllStringSubmatch(string(out), -1) {
			if v, _ := strconv.ParseInt(m[1], 10, 64); v >= n {
				return true
			}
		}
		return false
	}
}

// runKmodvm runs kmodvm to the end (at most d) and returns exit code, stdout and stderr.
func runKmodvm(t *testing.T, d time.Duration, env []string, args ...string) (int, string, string) {
	t.Helper()
	p := startKmodvm(t, env, args...)
	code := p.wait(d)
	return code, p.stdout.String(), p.stderr.String()
}

// partialEntries lists what an interrupted build may not leave in a cache: temporary
// entries (".tmp-*") and sync temporaries.
func partialEntries(t *testing.T, root string, depth int) []string {
	t.Helper()
	var found []string
	base := strings.Count(root, string(filepath.Separator))
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".tmp-") || strings.Contains(d.Name(), ".kmodvm-tmp-") {
			found = append(found, p)
		}
		if d.IsDir() && strings.Count(p, string(filepath.Separator))-base >= depth {
			return filepath.SkipDir
		}
		return nil
	})
	return found
}

// mountsBelow lists the mount points at or below dir (mmdebstrap mounts /proc, /dev... in
// the root it builds; none may survive an interrupted build).
func mountsBelow(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for l := range strings.Lines(string(data)) {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// randomFile writes n random bytes to path.
func randomFile(t *testing.T, path string, n int) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies the regular files of src (one level deep) to a new dir.
func copyDir(t *testing.T, src, dst string) string {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// eventually polls cond for up to d and reports whether it came to hold.
func eventually(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(200 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
