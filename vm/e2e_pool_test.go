package vm

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EPoolOverSSH: what a remote host gets from kmodvm, through a qemu+ssh:// URI (the
// in-process SSH server forwarding to the real system libvirtd): a storage pool of its own,
// a kernel uploaded once and found again by a second connection, a qcow2 overlay backed by
// an uploaded volume, and the libvirt probe booting the uploaded kernel there: under TCG it
// must print its banner through the console stream; under KVM it must agree with the local
// probe of the same machine (on this project's hosts KVM fails: emulation failure).
func TestE2EPoolOverSSH(t *testing.T) {
	kernel := e2eKernel(t)
	srv, keyFile, kh := forwardingHost(t)
	uri := "qemu+ssh://root@" + srv.Addr() + "/system?" + url.Values{"keyfile": {keyFile}, "known_hosts": {kh}}.Encode()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	name := fmt.Sprintf("kmodvm-e2e-%d", os.Getpid())
	dir := "/var/lib/libvirt/images/" + name
	t.Cleanup(func() {
		for _, args := range [][]string{{"pool-destroy", name}, {"pool-undefine", name}} {
			_ = exec.Command("virsh", append([]string{"-c", URISystem}, args...)...).Run()
		}
		_ = os.RemoveAll(dir)
	})
	connect := func() *Conn {
		c, err := Connect(ctx, uri, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Disconnect() })
		return c
	}
	c := connect()
	pool, err := OpenPool(ctx, c, name, dir)
	if err != nil {
		t.Fatal(err)
	}
	if free, err := pool.Available(); err != nil || free == 0 {
		t.Errorf("free space of the pool: %d, %v", free, err)
	}
	var sent int64
	pool.Progress = func(_ string, done, _ int64) { sent = done }
	start := time.Now()
	path, err := pool.Put(ctx, "e2e", "bzImage", kernel)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(kernel)
	t.Logf("MEASURE uploaded a %d byte kernel over SSH in %.2f s", st.Size(), time.Since(start).Seconds())
	if sent != st.Size() || path != filepath.Join(dir, "e2e-bzImage") {
		t.Errorf("Put: %s after %d of %d bytes; want %s, all bytes", path, sent, st.Size(), filepath.Join(dir, "e2e-bzImage"))
	}
	if out, err := exec.Command("cmp", kernel, path).CombinedOutput(); err != nil {
		t.Errorf("the uploaded kernel differs from the local one: %v %s", err, out)
	}

	// A second connection (another user, another run) finds it: no upload.
	c2 := connect()
	pool2, err := OpenPool(ctx, c2, name, dir)
	if err != nil {
		t.Fatal(err)
	}
	sent = 0
	pool2.Progress = func(_ string, done, _ int64) { sent = done }
	if again, err := pool2.Put(ctx, "e2e", "bzImage", kernel); err != nil || again != path || sent != 0 {
		t.Errorf("second Put: %s, %v, %d bytes sent; want %s reused", again, err, sent, path)
	}

	// An overlay on an uploaded qcow2.
	base := filepath.Join(t.TempDir(), "base.qcow2")
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", base, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	basePath, err := pool.Put(ctx, "e2e", "base.qcow2", base)
	if err != nil {
		t.Fatal(err)
	}
	ov, err := pool.Overlay(ctx, "e2e-vm.qcow2", basePath, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	info, err := exec.CommandContext(ctx, "qemu-img", "info", "-U", ov).CombinedOutput()
	if err != nil || !strings.Contains(string(info), "file format: qcow2") || !strings.Contains(string(info), "backing file: "+basePath) {
		t.Errorf("overlay %s: %v\n%s", ov, err, info)
	}
	if err := pool.Remove(ctx, "e2e-vm.qcow2"); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(ov); !os.IsNotExist(err) {
		t.Errorf("Remove left %s: %v", ov, err)
	}

	// The probe, through the same connection: TCG prints the banner over the console stream.
	ok, detail, err := probeVia(ctx, c, path, "qemu", 2*time.Minute)
	if err != nil || !ok {
		t.Errorf("TCG probe of the uploaded kernel: ok=%v %q %v; want its banner", ok, detail, err)
	}
	kvmOK, kvmDetail, err := ProbeKVMVia(ctx, c, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	localOK, localDetail, err := ProbeKVM(ctx, AccelProbe{Kernel: kernel})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("KVM through libvirt: %v %q; locally: %v %q", kvmOK, kvmDetail, localOK, localDetail)
	if kvmOK != localOK {
		t.Errorf("KVM through libvirt says %v (%s), the local probe %v (%s)", kvmOK, kvmDetail, localOK, localDetail)
	}
	out, _ := exec.Command("virsh", "-c", URISystem, "list", "--all", "--name").Output()
	if strings.Contains(string(out), "kmodvm-probe-") {
		t.Errorf("a probe domain is left: %s", out)
	}
}
