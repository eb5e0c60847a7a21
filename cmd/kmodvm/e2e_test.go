package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/cmd/kmodvm/config"
	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/provision/sandbox"
)

// The end-to-end tests drive the real CLI against a real libvirtd and QEMU guest, with
// the Rust kernel kmodvm builds. They need root, libvirtd and virtlogd (`make deps`), and
// run when KMODVM_E2E=1 (`make test`, and CI). Image and kernel come from the cache under
// the CLI's default place (KMODVM_HOME, else the XDG cache dir), built on first use.

func e2eEnv(t *testing.T) {
	t.Helper()
	if os.Getenv("KMODVM_E2E") != "1" {
		t.Skip("end-to-end test: set KMODVM_E2E=1 (make test does) to run it against libvirtd and QEMU")
	}
	if os.Getuid() != 0 {
		t.Fatal("KMODVM_E2E=1 needs root (mmdebstrap, bwrap and qemu:///system)")
	}
}

// e2eParallel is e2eEnv for a test that may share the machine with another e2e test: its
// VMs, files and processes are its own, and it neither restarts libvirtd, cuts connections,
// fills a file system, changes the environment, looks for processes by name nor inspects
// the shared kernel build trees (another test's variant build patches them for a while).
// Such tests run two at a time (scripts/e2e.sh: -parallel 2), once the tests that do those
// things have run, one at a time. Shared caches are safe to use together: a kernel tree is
// locked while it builds, and a build that waited for the lock finds the entry the other
// one made.
func e2eParallel(t *testing.T) {
	t.Helper()
	e2eEnv(t)
	t.Parallel()
}

// e2ePaths are the CLI's own state and cache dirs, as it resolves them.
func e2ePaths(t *testing.T) config.Paths {
	t.Helper()
	home, _ := os.UserHomeDir()
	p, err := config.ResolvePaths(os.Getenv, home)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// cli runs kmodvm in-process and returns its exit code, stdout and stderr.
func cli(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	start := time.Now()
	code := run(ctx, args, strings.NewReader(""), &out, &errb)
	t.Logf("kmodvm %s -> exit %d (%.1f s)\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, time.Since(start).Seconds(), out.String(), errb.String())
	return code, out.String(), errb.String()
}

func mustCLI(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	code, out, _ := cli(t, ctx, args...)
	if code != 0 {
		t.Fatalf("kmodvm %s: exit %d", strings.Join(args, " "), code)
	}
	return out
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(wd))
}

// e2eVM names a VM for one test (PREFIX-PID) and destroys it when the test ends, whatever
// state it was left in; it returns the name and the VM's state dir.
func e2eVM(t *testing.T, prefix string) (name, stateDir string) {
	t.Helper()
	name = fmt.Sprintf("%s-%d", prefix, os.Getpid())
	stateDir = filepath.Join(e2ePaths(t).State, "vms", name)
	t.Cleanup(func() {
		if domainExists(name) || dirExists(stateDir) {
			cli(t, context.Background(), "destroy", "-n", name)
		}
	})
	return name, stateDir
}

func domainExists(name string) bool {
	return exec.Command("virsh", "-c", "qemu:///system", "dominfo", e2eDomain(name)).Run() == nil
}

// e2eDomain is the libvirt domain of VM name created by this test's user.
func e2eDomain(name string) string { return sandbox.DomainName(os.Getuid(), name) }

// TestE2ESandbox: image build -> up -> exec -> status -> down -> up -> Rust kernel checks ->
// the module loop with every verdict, both build locations, a panic survived -> destroy,
// and nothing left behind.
func TestE2ESandbox(t *testing.T) {
	e2eParallel(t)
	ctx := context.Background()
	name, stateDir := e2eVM(t, "e2e")
	n := []string{"-n", name}
	paths := e2ePaths(t)
	root := repoRoot(t)

	mustCLI(t, ctx, "image", "build")

	// The kernel config, checked before any build: the difference from the base and the
	// verification; a typo in a fragment is named, with the nearest symbol.
	out := mustCLI(t, ctx, "kernel", "config", "--json")
	var kc struct {
		OK      bool `json:"ok"`
		Changes []struct {
			Symbol, New string
		} `json:"changes"`
	}
	if err := json.Unmarshal([]byte(out), &kc); err != nil || !kc.OK {
		t.Fatalf("kernel config --json: ok=%v, %v", kc.OK, err)
	}
	rust := false
	for _, c := range kc.Changes {
		rust = rust || (c.Symbol == "RUST" && c.New == "y")
	}
	if !rust {
		t.Errorf("kernel config: CONFIG_RUST=y is not among the changes from the base")
	}
	typo := filepath.Join(t.TempDir(), "kmodvm.yaml")
	os.WriteFile(typo, []byte("kernel:\n  fragments: [\"CONFIG_RUST_OVERFLOW_CHECKZ=y\"]\n"), 0o644)
	if code, _, errOut := cli(t, ctx, "--config", typo, "kernel", "build"); code != 2 || !strings.Contains(errOut, "RUST_OVERFLOW_CHECKS") {
		t.Errorf("kernel build with a misspelled fragment: exit %d, want 2 and a suggestion:\n%s", code, errOut)
	}

	// Issue: sandbox lifecycle.
	mustCLI(t, ctx, append([]string{"up"}, n...)...)
	if _, err := os.Stat(filepath.Join(stateDir, "overlay.qcow2")); err != nil {
		t.Fatalf("no overlay after up: %v", err)
	}
	out = mustCLI(t, ctx, append(n, "exec", "--", "uname", "-a")...)
	if !strings.Contains(out, "-kmodvm-") {
		t.Fatalf("uname -a does not show the kmodvm kernel: %q", out)
	}
	out = mustCLI(t, ctx, append(n, "status", "--json")...)
	var st struct {
		State         string `json:"state"`
		Accel         string `json:"accel"`
		KernelRelease string `json:"kernel_release"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v", err)
	}
	if st.State != "running" || (st.Accel != "tcg" && st.Accel != "kvm") || !strings.Contains(st.KernelRelease, "kmodvm") {
		t.Fatalf("status --json: %s", out)
	}
	if code, _, _ := cli(t, ctx, append(n, "exec", "--", "sh", "-c", "exit 7")...); code != 7 {
		t.Fatalf("exec did not pass the exit status through: got %d, want 7", code)
	}
	// A CI reads exec, down, sync and destroy as JSON.
	var ej struct {
		Schema         string
		Command        []string
		ExitCode       int `json:"exit_code"`
		Stdout, Stderr string
		Duration       int64 `json:"duration_ns"`
	}
	code, out, _ := cli(t, ctx, append(n, "exec", "--json", "--", "echo out; echo err >&2; exit 7")...)
	if err := json.Unmarshal([]byte(out), &ej); code != 7 || err != nil || ej.Schema != "kmodvm.exec/v1" || ej.ExitCode != 7 ||
		ej.Stdout != "out\n" || ej.Stderr != "err\n" || len(ej.Command) != 1 || ej.Duration <= 0 {
		t.Errorf("exec --json: exit %d (want 7), %v: %s", code, err, out)
	}
	var dj struct{ Schema, Name, Stopped string }
	out = mustCLI(t, ctx, append([]string{"down", "--json"}, n...)...)
	if err := json.Unmarshal([]byte(out), &dj); err != nil || dj.Schema != "kmodvm.down/v1" || dj.Name != name || (dj.Stopped != "saved" && dj.Stopped != "shutdown") {
		t.Errorf("down --json: %v: %s", err, out)
	}
	out = mustCLI(t, ctx, append(n, "status", "--json")...)
	if !strings.Contains(out, `"state": "shutoff"`) {
		t.Fatalf("after down: %s", out)
	}
	mustCLI(t, ctx, append([]string{"up"}, n...)...)

	// Issue: the Rust kernel.
	out = mustCLI(t, ctx, append(n, "exec", "--", "sh", "-c", "zcat /proc/config.gz | grep -x CONFIG_RUST=y")...)
	if !strings.Contains(out, "CONFIG_RUST=y") {
		t.Fatalf("guest kernel config has no CONFIG_RUST=y")
	}
	minimal := t.TempDir()
	// The sample of the kernel the guest runs: the cache may hold other kernels' trees too
	// (trixie's 6.12, whose module! wants `author` where 7.2's wants `authors`).
	version, _, _ := strings.Cut(st.KernelRelease, "-kmodvm-")
	samples, _ := filepath.Glob(filepath.Join(paths.Cache, "kernels", "trees", "*", "samples", "rust", "rust_minimal.rs"))
	sample := ""
	for _, s := range samples {
		tree := filepath.Dir(filepath.Dir(filepath.Dir(s)))
		if rel, err := os.ReadFile(filepath.Join(tree, "include", "config", "kernel.release")); err == nil && strings.HasPrefix(string(rel), version+"-") {
			sample = s
			break
		}
	}
	if sample == "" {
		t.Fatalf("no samples/rust/rust_minimal.rs in a cached kernel tree of %s (trees: %v)", version, samples)
	}
	data, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(minimal, "rust_minimal.rs"), data, 0o644)
	os.WriteFile(filepath.Join(minimal, "Kbuild"), []byte("obj-m := rust_minimal.o\n"), 0o644)
	var sj struct {
		Schema, Dir string
		GuestDir    string `json:"guest_dir"`
		Changed     int
	}
	out = mustCLI(t, ctx, append(n, "sync", "--json", minimal)...)
	remote := module.RemoteDir(minimal)
	if err := json.Unmarshal([]byte(out), &sj); err != nil || sj.Schema != "kmodvm.sync/v1" || sj.Dir != minimal || sj.GuestDir != remote || sj.Changed != 2 {
		t.Errorf("sync --json of 2 new files to %s: %v: %s", remote, err, out)
	}
	out = mustCLI(t, ctx, append(n, "exec", "--", "sh", "-c",
		"cd "+remote+" && make -C /lib/modules/$(uname -r)/build M="+remote+" LLVM=1 modules && insmod rust_minimal.ko && rmmod rust_minimal && dmesg | tail -n 20")...)
	if !strings.Contains(out, "Rust minimal sample (init)") {
		t.Fatalf("rust_minimal built in the guest did not print its init line:\n%s", out)
	}

	// Issue: the module loop.
	runCase := func(dir string, want int, mustSee string, extra ...string) string {
		t.Helper()
		args := append(append([]string{"run"}, n...), extra...)
		code, out, _ := cli(t, ctx, append(args, dir)...)
		if code != want {
			t.Errorf("kmodvm run %s: exit %d, want %d", dir, code, want)
		}
		if mustSee != "" && !strings.Contains(out, mustSee) {
			t.Errorf("kmodvm run %s: output lacks %q", dir, mustSee)
		}
		return out
	}
	runCase(filepath.Join(root, "examples/rust-hello"), 0, "Hello from Rust! (1/2)", "--build", "host", "-p", "greetings=2")
	runCase(filepath.Join(root, "examples/rust-hello"), 0, "Goodbye from Rust", "--build", "guest")
	runCase(filepath.Join(root, "examples/c-hello"), 0, "Hello, kernel, from C!", "-p", "whom=kernel")
	out = runCase(filepath.Join(root, "testdata/modules/broken-rust"), 3, "mismatched types")
	if !strings.Contains(out, filepath.Join(root, "testdata/modules/broken-rust/broken.rs")) {
		t.Errorf("build diagnostics do not name the host path of broken.rs")
	}
	runCase(filepath.Join(root, "testdata/modules/einval-c"), 4, "-EINVAL")
	runCase(filepath.Join(root, "testdata/modules/warn-c"), 5, "WARNING")
	runCase(filepath.Join(root, "testdata/modules/panic-c"), 5, "deliberate panic")
	// A Rust init that panics oopses the kernel (taint D) and leaves the module stuck
	// loading: the guest is restarted after the run, so the next run of it is judged the
	// same way, not refused as "already loaded".
	for range 2 {
		out := runCase(filepath.Join(root, "testdata/modules/oops-rust"), 5, "index out of bounds: the len is 3 but the index is 7")
		if !strings.Contains(out, "the kernel oopsed (taint D)") || !strings.Contains(out, "guest:   restarted") {
			t.Errorf("run of a Rust init that panics: want the guest restarted after the oops:\n%s", out)
		}
	}
	out = mustCLI(t, ctx, append(n, "status", "--json")...)
	if !strings.Contains(out, `"state": "running"`) {
		t.Fatalf("guest not running after the panic run: %s", out)
	}
	runCase(filepath.Join(root, "examples/rust-hello"), 0, "Hello from Rust!")
	code, out, _ = cli(t, ctx, append(append([]string{"run"}, n...), "--json", filepath.Join(root, "examples/c-hello"))...)
	var rj map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &rj) != nil || rj["verdict"] != "ok" || rj["kernel_release"] == "" {
		t.Errorf("run --json: exit %d, %s", code, out)
	}

	// Logs: the guest's kernel log, filtered.
	out = mustCLI(t, ctx, append(n, "logs", "--module", "c_hello")...)
	if !strings.Contains(out, "c_hello: Hello, world, from C!") || strings.Contains(out, "rust_hello") {
		t.Errorf("logs --module c_hello lacks the module's line:\n%s", out)
	}

	// Destroy leaves nothing behind.
	var xj struct {
		Schema, Name string
		StateDir     string `json:"state_dir"`
	}
	out = mustCLI(t, ctx, append([]string{"destroy", "--json"}, n...)...)
	if err := json.Unmarshal([]byte(out), &xj); err != nil || xj.Schema != "kmodvm.destroy/v1" || xj.Name != name || xj.StateDir != stateDir {
		t.Errorf("destroy --json: %v: %s (state dir %s)", err, out, stateDir)
	}
	if domainExists(name) {
		t.Errorf("domain kmodvm-%s still defined after destroy", name)
	}
	if dirExists(stateDir) {
		t.Errorf("state dir %s still there after destroy", stateDir)
	}
	if code, _, errOut := cli(t, ctx, append([]string{"destroy"}, n...)...); code == 0 || !strings.Contains(errOut, "no VM named") {
		t.Errorf("destroy of a missing VM: exit %d, %q", code, errOut)
	}

	// Ctrl-C while a new VM boots leaves no domain, overlay or state behind. The VM of this
	// name has a pristine save now, so a plain up restores it in about a second; --cold
	// boots, and the signal lands once kmodvm says it boots.
	if p, code := interruptAt(t, nil, "booting", 5*time.Minute, atOnce, syscall.SIGINT, append([]string{"up", "--cold"}, n...)...); code != 130 {
		t.Errorf("up --cold interrupted while booting: exit %d, want 130\nstderr:\n%s", code, p.stderr.String())
	}
	if domainExists(name) || dirExists(stateDir) {
		t.Errorf("an interrupted first up left domain=%v state=%v", domainExists(name), dirExists(stateDir))
	}
	// The same while a first up restores the pristine save: the restore may finish before
	// the signal lands (exit 0, then the VM is there and libvirt agrees); interrupted, it
	// leaves nothing.
	p, code := interruptAt(t, nil, "from its pristine save", 5*time.Minute, atOnce, syscall.SIGINT, append([]string{"up"}, n...)...)
	switch code {
	case 130:
		if domainExists(name) || dirExists(stateDir) {
			t.Errorf("a first up interrupted while restoring left domain=%v state=%v", domainExists(name), dirExists(stateDir))
		}
	case 0:
		stateMatchesLibvirt(t, name)
		mustCLI(t, ctx, append([]string{"destroy"}, n...)...)
	default:
		t.Errorf("up interrupted while restoring its pristine save: exit %d, want 130 (or 0, done first)\nstderr:\n%s", code, p.stderr.String())
	}
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
