package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/vm"
)

// TestE2EMatrix: two kernels (the default and a variant with configfs, the fix
// TestE2EDiagnostics's hint names; a variant costs about a minute on the default's tree) x
// two modules (one that loads, one whose init fails) in parallel VMs of their own, spread
// over two libvirt hosts: this machine's, and a "remote" one (this machine's libvirtd
// again, through OpenSSH's sshd on 127.0.0.1), to which the kernels and the base disk are
// uploaded. Every cell judged on its kernel, exit 4 for the cell that failed to load, the
// JUnit report one testsuite per kernel, and no VM left behind on either host.
func TestE2EMatrix(t *testing.T) {
	e2eEnv(t)
	ctx := context.Background()
	root := repoRoot(t)
	dir := t.TempDir()
	variant := filepath.Join(dir, "configfs.yaml")
	if err := os.WriteFile(variant, []byte("kernel:\n  fragments: [\"CONFIG_CONFIGFS_FS=y\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "default.yaml")
	if err := os.WriteFile(empty, []byte("# the default kernel\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hello, einval := filepath.Join(root, "examples/c-hello"), filepath.Join(root, "testdata/modules/einval-c")
	report := filepath.Join(dir, "matrix.xml")
	remote := e2eRemoteHost(t)
	// Two cells at once, on a 2-core machine: the scheduler puts each on the host with the
	// lower share of its slots in use, so both hosts run cells.
	code, out, _ := cli(t, ctx, "matrix", "--json", "--junit", report, "--jobs", "2", "--host", vm.URISystem, "--host", remote,
		"--config", empty, "--config", variant, hello, einval)
	var m matrixJSON
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("matrix --json: %v\n%s", err, out)
	}
	if code != exitLoadFailed || len(m.Cells) != 4 || m.Passed != 2 || m.Failed != 2 {
		t.Fatalf("matrix: exit %d, %d cells (%d passed, %d failed, %d errors); want exit %d, 4 cells, 2 passed, 2 failed", code, len(m.Cells), m.Passed, m.Failed, m.Errors, exitLoadFailed)
	}
	releases := map[string]string{}
	onHost := map[string]int{}
	var sum float64
	for _, c := range m.Cells {
		want, wantCode := "passed", exitOK
		if c.Module == einval {
			want, wantCode = "failed", exitLoadFailed
		}
		if c.Verdict != want || c.ExitCode != wantCode || (c.Host != vm.URISystem && c.Host != remote) || c.KernelRelease == "" {
			t.Errorf("cell %s x %s: %s (exit %d) on %q, kernel %q; want %s (exit %d) on one of the two hosts", c.Kernel, c.Module, c.Verdict, c.ExitCode, c.Host, c.KernelRelease, want, wantCode)
		}
		onHost[c.Host]++
		if c.Module == einval && !strings.Contains(c.Log, "einval") {
			t.Errorf("cell %s x %s: the log does not show the failed load:\n%s", c.Kernel, c.Module, c.Log)
		}
		if prev, ok := releases[c.Kernel]; ok && prev != c.KernelRelease {
			t.Errorf("kernel %s ran as %s and %s", c.Kernel, prev, c.KernelRelease)
		}
		releases[c.Kernel] = c.KernelRelease
		sum += c.Duration
	}
	if onHost[vm.URISystem] == 0 || onHost[remote] == 0 {
		t.Errorf("cells per host %v: want both hosts used", onHost)
	}
	if pooled, _ := filepath.Glob(filepath.Join(vm.PoolDir, "*-bzImage")); len(pooled) == 0 {
		t.Errorf("no kernel was uploaded to the remote host's pool %s", vm.PoolDir)
	}
	if releases[empty] == releases[variant] {
		t.Errorf("the default and the configfs kernel are the same release %q: the cells did not run on their own kernels", releases[empty])
	}
	t.Logf("MEASURE matrix of 4 cells: %.1f s wall, %.1f s of cells one after another (%.2f)", m.Duration, sum, m.Duration/sum)

	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var junitDoc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Name string `xml:"name,attr"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(raw, &junitDoc); err != nil || junitDoc.Tests != 4 || junitDoc.Failures != 2 || len(junitDoc.Suites) != 2 {
		t.Errorf("--junit: %d tests, %d failures, %d suites (%v); want 4, 2, 2:\n%s", junitDoc.Tests, junitDoc.Failures, len(junitDoc.Suites), err, raw)
	}

	// Every cell's VM is gone: no domain, no state.
	doms, _ := exec.Command("virsh", "-c", "qemu:///system", "list", "--all", "--name").Output()
	for _, d := range strings.Fields(string(doms)) {
		if strings.Contains(d, "-mx-") {
			t.Errorf("the matrix left the domain %s", d)
			exec.Command("virsh", "-c", "qemu:///system", "destroy", d).Run()
			exec.Command("virsh", "-c", "qemu:///system", "undefine", d, "--nvram").Run()
		}
	}
	vms, _ := filepath.Glob(filepath.Join(e2ePaths(t).State, "vms", "mx-*"))
	if len(vms) != 0 {
		t.Errorf("the matrix left VM state: %v", vms)
	}
	// The remote cells' overlays and console logs were volumes of their own in the host's pool.
	if vols, _ := filepath.Glob(filepath.Join(vm.PoolDir, "*-mx-*")); len(vols) != 0 {
		t.Errorf("the matrix left volumes on the remote host: %v", vols)
	}
}

// TestE2EMatrixSuites: the kernels of two Debian suites, sid's 7.2 (--suite sid: the
// default debug kernel the other tests share) and trixie's 6.12 LTS (a kmodvm.yaml on
// trixie without debug info, which builds in about half the time of the debug kernel on a
// new machine), each in its own image, x two Rust modules: testdata/modules/rust-both,
// which keeps to what both kernels' Rust support offers, and examples/rust-hello, which
// needs 7.2's (module parameters, kernel::fs, kernel::miscdevice). rust-both passes on
// both; rust-hello passes on sid and fails to build on trixie, its cell carrying rustc's
// diagnostics with the host path of the module's source. The first run builds trixie's
// image and kernel.
func TestE2EMatrixSuites(t *testing.T) {
	e2eParallel(t)
	ctx := context.Background()
	root := repoRoot(t)
	trixie := filepath.Join(t.TempDir(), "trixie.yaml")
	if err := os.WriteFile(trixie, []byte("image:\n  suite: trixie\nkernel:\n  debug: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hello, both := filepath.Join(root, "examples/rust-hello"), filepath.Join(root, "testdata/modules/rust-both")
	code, out, _ := cli(t, ctx, "matrix", "--json", "--jobs", "2", "--suite", "sid", "--config", trixie, hello, both)
	var m matrixJSON
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("matrix --json: %v\n%s", err, out)
	}
	if code != exitBuildFailed || m.ExitCode != code || len(m.Cells) != 4 || m.Passed != 3 || m.Failed != 1 {
		t.Fatalf("matrix: exit %d (json %d), %d cells (%d passed, %d failed, %d errors); want exit %d, 4 cells, 3 passed, 1 failed\n%s",
			code, m.ExitCode, len(m.Cells), m.Passed, m.Failed, m.Errors, exitBuildFailed, out)
	}
	wantRelease := map[string]string{"sid": "7.2.", trixie: "6.12."}
	var sum float64
	for _, c := range m.Cells {
		want, wantCode := "passed", exitOK
		if c.Kernel == trixie && c.Module == hello {
			want, wantCode = "failed", exitBuildFailed
		}
		if c.Verdict != want || c.ExitCode != wantCode || wantRelease[c.Kernel] == "" || !strings.HasPrefix(c.KernelRelease, wantRelease[c.Kernel]) {
			t.Errorf("cell %s x %s: %s (exit %d) on kernel %q; want %s (exit %d) on %s*:\n%s",
				c.Kernel, c.Module, c.Verdict, c.ExitCode, c.KernelRelease, want, wantCode, wantRelease[c.Kernel], c.Log)
		}
		if want == "failed" && (!strings.Contains(c.Log, "error[E") || !strings.Contains(c.Log, filepath.Join(hello, "rust_hello.rs:"))) {
			t.Errorf("cell %s x %s: the log lacks rustc's errors at %s:\n%s", c.Kernel, c.Module, filepath.Join(hello, "rust_hello.rs"), c.Log)
		}
		sum += c.Duration
	}
	t.Logf("MEASURE matrix sid x trixie, 4 cells: %.1f s wall, %.1f s of cells one after another (%.2f)", m.Duration, sum, m.Duration/sum)
}
