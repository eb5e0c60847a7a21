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
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	hostKey := sshtest.NewKey(t)
	keyFile, kh := filepath.Join(dir, "id"), filepath.Join(dir, "known_hosts")
	client := sshtest.NewKeyFiles(t, keyFile)
	srv := sshtest.NewServer(t, hostKey, client.PublicKey(), sshtest.WithForwarding())
	if err := os.WriteFile(kh, []byte(knownhosts.Line([]string{knownhosts.Normalize(srv.Addr())}, hostKey.PublicKey())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	uri := "qemu+ssh://root@" + srv.Addr() + "/system?" + url.Values{"keyfile": {keyFile}, "known_hosts": {kh}}.Encode()

	// The pool is the machine's; a test that made it removes it.
	if exec.Command("virsh", "-c", vm.URISystem, "pool-info", vm.PoolName).Run() != nil {
		t.Cleanup(func() {
			for _, args := range [][]string{{"pool-destroy", vm.PoolName}, {"pool-undefine", vm.PoolName}} {
				_ = exec.Command("virsh", append([]string{"-c", vm.URISystem}, args...)...).Run()
			}
			_ = os.RemoveAll(vm.PoolDir)
		})
	}
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
