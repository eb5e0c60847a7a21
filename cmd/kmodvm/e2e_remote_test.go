package main

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/kmodvm/kmodvm/provision/sandbox"
	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/sshtest"
)

// TestE2EDoctorRemote: `kmodvm doctor --uri qemu+ssh://...` checks the host behind the URI
// (here this machine's libvirtd reached through an SSH server on 127.0.0.1, as a remote
// sshd would forward it): libvirt and QEMU versions, CPUs and memory, kmodvm's storage
// pool and its free space, and KVM by booting the cached kernel there, which must agree
// with the local probe.
func TestE2EDoctorRemote(t *testing.T) {
	e2eEnv(t)
	ctx := context.Background()
	uri := e2eRemoteHost(t)
	_, out, _ := cli(t, ctx, "doctor", "--json", "--uri", uri)
	var d doctorJSON
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	checks := map[string]check{}
	for _, c := range d.Checks {
		checks[c.Name] = c
	}
	for name, want := range map[string]string{
		"libvirt": "reachable (libvirt ", "host": "CPUs", "pool": "storage pool kmodvm at /var/lib/libvirt/images/kmodvm: ",
	} {
		if c := checks[name]; c.Status != "ok" || !strings.Contains(c.Detail, want) {
			t.Errorf("check %s = %+v, want ok saying %q", name, c, want)
		}
	}
	if !strings.Contains(checks["libvirt"].Detail, "QEMU ") {
		t.Errorf("the libvirt check does not name QEMU's version: %q", checks["libvirt"].Detail)
	}
	kernels := sandbox.CachedKernels(e2ePaths(t).Cache)
	if len(kernels) == 0 {
		t.Fatal("no cached kernel: the tests before this one build it")
	}
	localOK, localDetail, err := vm.ProbeKVM(ctx, vm.AccelProbe{Kernel: kernels[0]})
	if err != nil {
		t.Fatal(err)
	}
	if kvm := checks["kvm"]; (kvm.Status == "ok") != localOK {
		t.Errorf("doctor --uri says of KVM %+v; the local probe says %v (%s)", kvm, localOK, localDetail)
	}
	uploaded := filepath.Join(vm.PoolDir, filepath.Base(filepath.Dir(kernels[0]))+"-bzImage")
	if out, err := exec.Command("cmp", kernels[0], uploaded).CombinedOutput(); err != nil {
		t.Errorf("the kernel doctor booted is not in the pool as %s: %v %s", uploaded, err, out)
	}
}

// e2eRemoteHost is a qemu+ssh:// URI to this machine's system libvirtd through an SSH
// server on 127.0.0.1 that forwards what a remote sshd would (the daemon's socket, the
// host's loopback ports), its host key in the URI's known_hosts= and the client key in its
// keyfile=. kmodvm's storage pool on the machine is removed afterwards if the test made it.
func e2eRemoteHost(t *testing.T) string {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	hostKey := sshtest.NewKey(t)
	keyFile, kh := filepath.Join(dir, "id"), filepath.Join(dir, "known_hosts")
	client := sshtest.NewKeyFiles(t, keyFile)
	srv := sshtest.NewServer(t, hostKey, client.PublicKey(), sshtest.WithForwarding())
	if err := os.WriteFile(kh, []byte(knownhosts.Line([]string{knownhosts.Normalize(srv.Addr())}, hostKey.PublicKey())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if exec.Command("virsh", "-c", vm.URISystem, "pool-info", vm.PoolName).Run() != nil {
		t.Cleanup(func() {
			for _, args := range [][]string{{"pool-destroy", vm.PoolName}, {"pool-undefine", vm.PoolName}} {
				_ = exec.Command("virsh", append([]string{"-c", vm.URISystem}, args...)...).Run()
			}
			_ = os.RemoveAll(vm.PoolDir)
		})
	}
	return "qemu+ssh://root@" + srv.Addr() + "/system?" + url.Values{"keyfile": {keyFile}, "known_hosts": {kh}}.Encode()
}

// TestE2ERemoteUp: a VM on a "remote" host (this machine's libvirtd behind an SSH server on
// 127.0.0.1): up uploads the kernel and base disk into the host's pool and boots from
// there, the guest's SSH is reached through the host's loopback, a module runs with its
// kernel log judged (the console log copied from the host when needed), and destroy
// removes the VM's own volumes, keeping the shared kernel and disk for the next VM.
func TestE2ERemoteUp(t *testing.T) {
	e2eEnv(t)
	ctx := context.Background()
	uri := e2eRemoteHost(t)
	name, _ := e2eVM(t, "e2e-remote")
	n := []string{"-n", name, "--uri", uri}
	t.Cleanup(func() {
		if domainExists(name) {
			cli(t, context.Background(), append([]string{"destroy"}, n...)...)
		}
	})
	_, _, errOut := cli(t, ctx, append([]string{"up"}, n...)...)
	if !domainExists(name) {
		t.Fatalf("up on %s: no domain", uri)
	}
	for _, l := range strings.Split(errOut, "\n") {
		if strings.Contains(l, "uploading") && strings.Contains(l, "100%") {
			t.Logf("MEASURE first remote up: %s", l)
		}
	}
	xml, err := exec.Command("virsh", "-c", vm.URISystem, "dumpxml", e2eDomain(name)).Output()
	if err != nil || !strings.Contains(string(xml), vm.PoolDir+"/") {
		t.Errorf("the domain does not boot from the pool (%v):\n%s", err, xml)
	}
	if out := mustCLI(t, ctx, append(n, "exec", "--", "uname", "-r")...); !strings.Contains(out, "-kmodvm-") {
		t.Errorf("exec uname -r in the remote VM: %q", out)
	}
	root := repoRoot(t)
	code, out, _ := cli(t, ctx, append(append([]string{"run"}, n...), "--json", filepath.Join(root, "examples/c-hello"))...)
	if code != 0 || !strings.Contains(out, `"verdict": "ok"`) {
		t.Errorf("run examples/c-hello on the remote VM: exit %d\n%s", code, out)
	}
	code, out, _ = cli(t, ctx, append(append([]string{"run"}, n...), filepath.Join(root, "testdata/modules/panic-c"))...)
	if code != 5 || !strings.Contains(out, "Kernel panic") {
		t.Errorf("a module that panics the remote VM: exit %d, want 5 with the panic from the host's console log\n%s", code, out)
	}
	mustCLI(t, ctx, append([]string{"destroy"}, n...)...)
	vols, _ := filepath.Glob(filepath.Join(vm.PoolDir, e2eDomain(name)+"*"))
	if len(vols) != 0 {
		t.Errorf("destroy left the VM's volumes %v", vols)
	}
	shared, _ := filepath.Glob(filepath.Join(vm.PoolDir, "*-base.qcow2"))
	if len(shared) == 0 {
		t.Errorf("destroy removed the shared base disk from the pool")
	}
}
