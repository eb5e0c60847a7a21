package sandbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/provision/kernel"
	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/vmtest"
)

const testRemoteURI = "qemu+ssh://dev@lab.example/system"

// fakeHost is the fake libvirt as a remote host's connection: its loopback is this
// machine's, where the fake QEMU forwards guests' SSH.
type fakeHost struct {
	*vmtest.Libvirt
	dials []int
}

func (h *fakeHost) DialHostLoopback(ctx context.Context, port int) (net.Conn, error) {
	h.dials = append(h.dials, port)
	var d net.Dialer
	return d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}

// remoteFixture is a fixture whose sandbox works on a remote host (the fake one).
func remoteFixture(t *testing.T) (*fixture, *fakeHost) {
	fx := newFixture(t)
	h := &fakeHost{Libvirt: fx.lv}
	fx.sb.lv = h
	fx.sb.opt.URI = testRemoteURI
	return fx, h
}

// qcow2File writes a file with a qcow2 header saying size.
func qcow2File(t *testing.T, path string, size uint64) string {
	t.Helper()
	h := make([]byte, 104)
	copy(h, "QFI\xfb")
	binary.BigEndian.PutUint64(h[24:], size)
	return writeFile(t, path, string(h))
}

// A new VM on a remote host: kernel and base disk uploaded to the pool once, shared by the
// next VM; an overlay and a console log of its own; the accelerator probed there.
func TestPlaceOnHost(t *testing.T) {
	fx, h := remoteFixture(t)
	base := qcow2File(t, filepath.Join(fx.opt.Cache, "images", "d1", "base.qcow2"), 8<<30)
	art := &Artifacts{Kernel: &kernel.Result{Dir: filepath.Dir(fx.cache.kernel), Key: "k1"}, Disk: &images.Disk{Base: base, Key: "d1"}}
	h.SetConsoleAll("[    0.000000] Linux version 7.2.13-kmodvm\n")
	fx.sb.opt.Accel = vm.AccelAuto
	for _, name := range []string{"dev", "ci"} {
		in := &Instance{Name: name, Domain: DomainName(testUser.UID, name)}
		if err := fx.sb.placeOnHost(t.Context(), in, art); err != nil {
			t.Fatal(err)
		}
		dn := in.Domain
		want := HostFiles{Kernel: vm.PoolDir + "/k1-bzImage", Base: vm.PoolDir + "/d1-base.qcow2",
			Overlay: vm.PoolDir + "/" + dn + ".qcow2", Console: vm.PoolDir + "/" + dn + ".console.log"}
		if in.Host == nil || *in.Host != want || in.Accel != vm.AccelKVM {
			t.Errorf("%s: host files %+v accel %s; want %+v on kvm (the probe there printed a banner)", name, in.Host, in.Accel, want)
		}
	}
	if n := len(h.Calls("StorageVolUpload")); n != 2 {
		t.Errorf("%d uploads for two VMs, want 2 (kernel and base disk, once)", n)
	}
	for _, v := range h.Volumes(vm.PoolName) {
		if strings.HasSuffix(v.Name, "-dev.qcow2") && (v.Backing != vm.PoolDir+"/d1-base.qcow2" || v.Capacity != 8<<30 || v.Format != "qcow2") {
			t.Errorf("overlay %+v: want a qcow2 of 8 GiB on the uploaded base", v)
		}
	}
}

// A VM on a remote host boots from the host's paths, is reached through the host's
// loopback, shows the host's console log, and destroy removes its own volumes only.
func TestRemoteVMLifecycle(t *testing.T) {
	fx, h := remoteFixture(t)
	in := fx.instance("dev", 0)
	dn := in.DomainName()
	pool, err := vm.OpenPool(t.Context(), h, vm.PoolName, vm.PoolDir)
	if err != nil {
		t.Fatal(err)
	}
	h.AddVolume(vm.PoolName, "k1-bzImage", []byte("kernel"))
	in.Host = &HostFiles{Kernel: vm.PoolDir + "/k1-bzImage", Base: vm.PoolDir + "/d1-base.qcow2"}
	if in.Host.Overlay, err = pool.Overlay(t.Context(), dn+".qcow2", in.Host.Base, 1<<30); err != nil {
		t.Fatal(err)
	}
	if in.Host.Console, err = pool.Empty(t.Context(), dn+".console.log"); err != nil {
		t.Fatal(err)
	}
	if err := in.save(); err != nil {
		t.Fatal(err)
	}

	got, c, err := fx.sb.Up(t.Context(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	d, _ := fx.lv.Domain(dn)
	for _, p := range []string{in.Host.Kernel, in.Host.Overlay, in.Host.Console} {
		if !strings.Contains(d.XML, p) {
			t.Errorf("the domain does not name the host's %s:\n%s", p, d.XML)
		}
	}
	// Only the owner metadata names this machine's state dir (whose VM the domain is).
	if strings.Contains(d.XML, fx.opt.Cache) || strings.Count(d.XML, fx.opt.State) != 1 {
		t.Errorf("the domain names this machine's files:\n%s", d.XML)
	}
	if got.SSHPort < 20000 || len(h.dials) == 0 || h.dials[0] != got.SSHPort {
		t.Errorf("SSH port %d, dials through the host %v; want a port picked for the host, reached through it", got.SSHPort, h.dials)
	}

	g, err := fx.sb.Guest(t.Context(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	h.AppendVolume(vm.PoolName, dn+".console.log", []byte("[    5.000000] rust_hello: loaded\n"))
	if log := readFile(t, g.ConsoleLog()); !bytes.Contains(log, []byte("rust_hello: loaded")) {
		t.Errorf("the console log here lacks the host's line: %q", log)
	}
	h.AppendVolume(vm.PoolName, dn+".console.log", []byte("[    6.000000] second\n"))
	if log := string(readFile(t, g.ConsoleLog())); strings.Count(log, "rust_hello: loaded") != 1 || !strings.HasSuffix(log, "second\n") {
		t.Errorf("a second copy did not append just what was new: %q", log)
	}

	if err := fx.sb.Destroy(t.Context(), "dev"); err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, v := range h.Volumes(vm.PoolName) {
		left = append(left, v.Name)
	}
	if !slices.Equal(left, []string{"k1-bzImage"}) {
		t.Errorf("volumes after destroy %v, want the shared kernel only", left)
	}
	if _, err := os.Stat(in.Dir()); !os.IsNotExist(err) {
		t.Errorf("state dir left: %v", err)
	}
}
