package images

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/images/ondisk"
)

// TestE2E builds a real root and disk. It runs only with KMODVM_E2E=1, as root, with
// KMODVM_TEST_CACHE naming a cache directory (kept between runs: a second run is all hits).
// KMODVM_TEST_SUITE picks another suite (default sid). A cold run takes about 2-3 minutes:
//
//	KMODVM_E2E=1 KMODVM_TEST_CACHE=/var/tmp/kmodvm-images-test go test ./images -run E2E -v -timeout 30m
func TestE2E(t *testing.T) {
	if os.Getenv("KMODVM_E2E") != "1" {
		t.Skip("set KMODVM_E2E=1 (and KMODVM_TEST_CACHE) to build a real image")
	}
	cache := os.Getenv("KMODVM_TEST_CACHE")
	if cache == "" {
		t.Fatal("KMODVM_E2E=1 needs KMODVM_TEST_CACHE: a cache directory for the test image")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the image end-to-end test needs root (mmdebstrap, mkfs of a root-owned tree)")
	}
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	spec := DefaultSpec()
	if s := os.Getenv("KMODVM_TEST_SUITE"); s != "" {
		spec.Suite = s
	}

	var mu sync.Mutex
	var lines []string
	progress := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, s)
		t.Logf("progress: %s", s)
	}
	takeLines := func() []string {
		mu.Lock()
		defer mu.Unlock()
		l := lines
		lines = nil
		return l
	}

	t.Run("CancelLeavesNothing", func(t *testing.T) {
		// Another spec (an extra package), so the real build below is not disturbed.
		other := spec
		other.Packages = append(other.Packages, "hello")
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		_, err := BuildRoot(cctx, log, cache, other, func(s string) {
			if strings.Contains(s, "downloading packages") || strings.Contains(s, "extracting") {
				cancel()
			}
		})
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted") {
			t.Fatalf("BuildRoot cancelled = %v", err)
		}
		// Its processes name its own temporary root (roots/.tmp-<hash>-*) on their command
		// lines; anything else working in the cache (a kmodvm of the user's, a build tool
		// run in another root) is not this build's.
		mine := filepath.Join(cache, "roots", ".tmp-"+other.Hash()+"-")
		waitFor(t, func() bool { return len(procsWith(mine)) == 0 }, "mmdebstrap, apt and dpkg to die")
		if _, err := os.Stat(filepath.Join(cache, "roots", other.Hash())); !os.IsNotExist(err) {
			t.Errorf("cancelled build left an entry")
		}
		if tmps, _ := filepath.Glob(filepath.Join(cache, "roots", ".tmp-*")); len(tmps) > 0 {
			t.Errorf("cancelled build left %v", tmps)
		}
		if m, _ := ondisk.MountsUnder(filepath.Join(cache, "roots")); len(m) > 0 {
			t.Errorf("cancelled build left mounts: %v", m)
		}
	})

	t.Run("FailureNamesTheLog", func(t *testing.T) {
		bad := spec
		bad.Packages = append(bad.Packages, "kmodvm-no-such-package")
		_, err := BuildRoot(ctx, log, cache, bad, nil)
		failedLog := filepath.Join(cache, "roots", bad.Hash()+".failed.log")
		if err == nil || !strings.Contains(err.Error(), "image build failed (mmdebstrap exited") ||
			!strings.Contains(err.Error(), "hint: full log in "+failedLog) {
			t.Fatalf("BuildRoot with a missing package = %v", err)
		}
		t.Logf("error message:\n%v", err)
		if b, err := os.ReadFile(failedLog); err != nil || !bytes.Contains(b, []byte("kmodvm-no-such-package")) {
			t.Errorf("failed log %s: %v", failedLog, err)
		}
		if _, err := OpenRoot(cache, bad); !errors.Is(err, ErrNotBuilt) {
			t.Errorf("failed build is a cache hit: %v", err)
		}
	})

	start := time.Now()
	root, err := BuildRoot(ctx, log, cache, spec, progress)
	if err != nil {
		t.Fatalf("BuildRoot: %v", err)
	}
	t.Logf("MEASURE BuildRoot first call: %v (%d progress lines; 0 means it was cached already), root %s",
		time.Since(start).Round(time.Millisecond), len(takeLines()), du(t, root.Dir))

	start = time.Now()
	again, err := BuildRoot(ctx, log, cache, spec, progress)
	if err != nil {
		t.Fatalf("BuildRoot again: %v", err)
	}
	t.Logf("MEASURE BuildRoot cached: %v", time.Since(start).Round(time.Microsecond))
	if l := takeLines(); len(l) > 0 || again.Dir != root.Dir {
		t.Errorf("second BuildRoot was not a cache hit: dir %s vs %s, progress %q", again.Dir, root.Dir, l)
	}
	if opened, err := OpenRoot(cache, spec); err != nil || opened.Dir != root.Dir {
		t.Errorf("OpenRoot = %v, %v", opened, err)
	}

	t.Run("Command", func(t *testing.T) {
		var out bytes.Buffer
		if err := root.Command(ctx, RunOptions{Stdout: &out, Stderr: &out}, "rustc", "--version").Run(); err != nil {
			t.Fatalf("rustc --version: %v: %s", err, out.String())
		}
		if !strings.HasPrefix(out.String(), "rustc ") {
			t.Errorf("rustc --version = %q", out.String())
		}

		host := t.TempDir()
		if err := os.WriteFile(filepath.Join(host, "in.txt"), []byte("from host"), 0o644); err != nil {
			t.Fatal(err)
		}
		out.Reset()
		cmd := root.Command(ctx, RunOptions{
			Binds: []Bind{{Host: host, Guest: "/work", ReadOnly: true}}, Dir: "/work",
			Env: []string{"KMODVM_TEST=yes"}, Stdout: &out, Stderr: &out,
		}, "sh", "-c", `echo "$PATH|$HOME|$KMODVM_TEST|$(pwd)|$(cat in.txt)"; touch x 2>/dev/null && echo writable; true`)
		if err := cmd.Run(); err != nil {
			t.Fatalf("sh: %v: %s", err, out.String())
		}
		if want := GuestPath + "|/root|yes|/work|from host\n"; out.String() != want {
			t.Errorf("environment inside = %q, want %q", out.String(), want)
		}
	})

	t.Run("CancelKillsEverything", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cmd := root.Command(cctx, RunOptions{}, "sh", "-c", "sleep 987651 & sleep 987652 & wait")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return len(procsWith("98765")) == 2 }, "both sleeps to start")
		cancel()
		_ = cmd.Wait()
		// The namespace's init gets SIGKILL when bwrap dies; the kernel then kills the rest.
		waitFor(t, func() bool { return len(procsWith("98765")) == 0 }, "every process of the command to die")
	})

	t.Run("Versions", func(t *testing.T) {
		v, err := root.Versions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, tool := range versionTools {
			if v[tool] == "" {
				t.Errorf("no version for %s: %v", tool, v)
			}
		}
		t.Logf("versions: %v", v)
	})

	extras := t.TempDir()
	if err := os.MkdirAll(filepath.Join(extras, "kernel"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(extras, "kernel", "hello.txt"), []byte("extra content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dspec := DiskSpec{Root: root, Extras: []Tree{{Src: extras, Dst: "/lib/modules/0.0.0-test"}}, ExtrasKey: "images-e2e-extras-1"}
	start = time.Now()
	disk, err := BuildDisk(ctx, log, cache, dspec, progress)
	if err != nil {
		t.Fatalf("BuildDisk: %v", err)
	}
	t.Logf("MEASURE BuildDisk first call: %v (%d progress lines; 0 means it was cached already), base.qcow2 %s",
		time.Since(start).Round(time.Millisecond), len(takeLines()), du(t, disk.Base))
	start = time.Now()
	disk2, err := BuildDisk(ctx, log, cache, dspec, progress)
	if err != nil {
		t.Fatalf("BuildDisk again: %v", err)
	}
	t.Logf("MEASURE BuildDisk cached: %v", time.Since(start).Round(time.Microsecond))
	if l := takeLines(); len(l) > 0 || disk2.Base != disk.Base {
		t.Errorf("second BuildDisk was not a cache hit: %q", l)
	}
	for _, p := range []string{disk.ClientKey, disk.Base} { // the base holds the guest's host key
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", p, fi, err)
		}
	}
	for _, p := range []string{"usr/src", "etc/ssh/ssh_host_rsa_key", "etc/hostname"} {
		if _, err := os.Stat(filepath.Join(root.Dir, p)); err != nil {
			t.Errorf("BuildDisk changed the root: %v", err)
		}
	}
	if tarballs, _ := filepath.Glob(filepath.Join(root.Dir, "usr/src/linux-source-*.tar.*")); len(tarballs) == 0 {
		t.Errorf("BuildDisk removed the kernel source from the root")
	}

	t.Run("DiskContent", func(t *testing.T) {
		raw := filepath.Join(t.TempDir(), "raw.img")
		run(t, "qemu-img", "convert", "-O", "raw", disk.Base, raw)
		debugfs := func(req string) string { return run(t, "debugfs", "-R", req, raw) }
		if got := debugfs("cat /etc/hostname"); got != Hostname+"\n" {
			t.Errorf("hostname in the disk = %q", got)
		}
		if got := debugfs("cat /usr/lib/modules/0.0.0-test/kernel/hello.txt"); got != "extra content\n" {
			t.Errorf("extra in the disk = %q", got)
		}
		pub, _ := os.ReadFile(disk.ClientPub)
		if got := debugfs("cat /root/.ssh/authorized_keys"); got != string(pub) {
			t.Errorf("authorized_keys = %q, want %q", got, pub)
		}
		if got := debugfs("stat /usr/sbin/kmodvm-init"); !strings.Contains(got, "Mode:  0755") || !strings.Contains(got, "User:     0") {
			t.Errorf("init in the disk:\n%s", got)
		}
		if got := debugfs("ls /usr/src"); strings.Contains(got, "linux-source") && strings.Contains(got, ".tar") {
			t.Errorf("kernel source tarball in the disk: %s", got)
		}
		if got := debugfs("ls /etc/ssh"); strings.Contains(got, "rsa") {
			t.Errorf("package host keys in the disk: %s", got)
		}
		// The restored guest's fix-up: a static program (no interpreter to load), root's,
		// that refuses a time it cannot read before it sets anything.
		if got := debugfs("stat " + GuestFix); !strings.Contains(got, "Mode:  0755") || !strings.Contains(got, "User:     0") {
			t.Errorf("%s in the disk:\n%s", GuestFix, got)
		}
		fix := filepath.Join(t.TempDir(), "kmodvm-fix")
		debugfs("dump -p " + GuestFix + " " + fix)
		if f, err := elf.Open(fix); err != nil {
			t.Errorf("%s: %v", GuestFix, err)
		} else {
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("%s is linked dynamically", GuestFix)
				}
			}
			f.Close()
		}
		out, err := exec.Command(fix, "1.5").CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "1.5 is not SECONDS.NANOSECONDS") {
			t.Errorf("%s 1.5: %v, %q; want exit 2 and the argument named", GuestFix, err, out)
		}
	})

	t.Run("Overlay", func(t *testing.T) {
		overlay := filepath.Join(t.TempDir(), "vm.qcow2")
		if err := CreateOverlay(ctx, disk.Base, overlay); err != nil {
			t.Fatal(err)
		}
		info := run(t, "qemu-img", "info", overlay)
		if !strings.Contains(info, "backing file: "+disk.Base) {
			t.Errorf("overlay info lacks the backing file:\n%s", info)
		}
		if err := CreateOverlay(ctx, disk.Base, overlay); err == nil {
			t.Errorf("CreateOverlay overwrote an existing overlay")
		}
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, errOut.String())
	}
	return out.String()
}

func du(t *testing.T, p string) string {
	out, err := exec.Command("du", "-sh", "--apparent-size", p).Output()
	if err != nil {
		return "?"
	}
	apparent := strings.Fields(string(out))[0]
	out, _ = exec.Command("du", "-sh", p).Output()
	return apparent + " apparent, " + strings.Fields(string(out))[0] + " on disk"
}

// procsWith lists the PIDs whose command line contains s.
func procsWith(s string) []string {
	var pids []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) && !bytes.Contains(b, []byte("sh\x00-c")) {
			pids = append(pids, filepath.Base(d))
		}
	}
	return pids
}

// waitFor polls cond until it holds, failing after a generous bound (this is a liveness
// check, not a timing assertion).
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
