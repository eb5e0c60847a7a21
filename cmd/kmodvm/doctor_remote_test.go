package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/vmtest"
)

const remoteURI = "qemu+ssh://dev@lab.example/system"

// doctorRemote runs `kmodvm doctor --json --uri remoteURI` against the fake host f, with a
// built kernel in the cache when kernel is true, and returns its checks by name.
func doctorRemote(t *testing.T, f *vmtest.Libvirt, kernel bool) (int, map[string]check) {
	t.Helper()
	isolate(t)
	if kernel {
		k := filepath.Join(os.Getenv("KMODVM_HOME"), "cache", "kernels", "builds", "0123abcd", "bzImage")
		if err := os.MkdirAll(filepath.Dir(k), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(k, []byte("a kernel"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := runApp(ctx, []string{"doctor", "--json", "--uri", remoteURI}, strings.NewReader(""), &out, &errb, func(a *app) {
		a.libvirt = func(context.Context) (vm.Libvirt, error) { return f, nil }
	})
	var d doctorJSON
	if err := json.Unmarshal(out.Bytes(), &d); err != nil {
		t.Fatalf("doctor --json: %v\n%s\n%s", err, out.String(), errb.String())
	}
	checks := map[string]check{}
	for _, c := range d.Checks {
		if _, dup := checks[c.Name]; !dup || c.Status != "ok" {
			checks[c.Name] = c
		}
	}
	return code, checks
}

// doctor --uri on a remote host checks the host, not this machine: its libvirt and QEMU,
// its CPUs and memory, kmodvm's storage pool there and its free space, and KVM by booting
// the cached kernel there.
func TestDoctorRemote(t *testing.T) {
	const banner = "[    0.000000] Linux version 7.2.13-kmodvm\n"
	for _, tt := range []struct {
		name   string
		kernel bool
		setup  func(f *vmtest.Libvirt)
		want   map[string]string // check -> "status: detail substring"
	}{
		{name: "all well", kernel: true, setup: func(f *vmtest.Libvirt) { f.SetConsoleAll(banner) }, want: map[string]string{
			"libvirt": "ok: " + remoteURI + " reachable (libvirt 9.0.0, QEMU 7.2.0)",
			"host":    "ok: 8 CPUs, 32768 MiB: room for 8 VMs of 1 CPU and 1024 MiB",
			"pool":    "ok: storage pool kmodvm at /var/lib/libvirt/images/kmodvm: 1024.0 GiB free",
			"kvm":     "ok: KVM runs guests on the host",
			"socket":  "ok: remote URI",
		}},
		{name: "KVM paused", kernel: true, setup: func(f *vmtest.Libvirt) {
			f.OnCall("DomainGetState", func(name string) { _ = f.SetState(name, libvirt.DomainPaused, 0) })
		}, want: map[string]string{"kvm": "warn: KVM cannot run guests on the host (QEMU paused the kvm guest"}},
		{name: "no kernel yet", want: map[string]string{"kvm": "warn: checked once a kernel is built"}},
		{name: "pool refused", kernel: true, setup: func(f *vmtest.Libvirt) {
			f.FailOn("StoragePoolBuild", vmtest.Error(38, "cannot create directory '/var/lib/libvirt/images/kmodvm': Permission denied"))
		}, want: map[string]string{"pool": "fail: build storage pool \"kmodvm\"", "kvm": ""}},
		{name: "host too small", setup: func(f *vmtest.Libvirt) { f.SetNode(1, 512) }, want: map[string]string{"host": "fail: room for 0 VMs"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := vmtest.NewLibvirt()
			f.SetNode(8, 32768)
			if tt.setup != nil {
				tt.setup(f)
			}
			_, checks := doctorRemote(t, f, tt.kernel)
			for name, want := range tt.want {
				c, ok := checks[name]
				if want == "" {
					if ok {
						t.Errorf("check %s ran: %+v", name, c)
					}
					continue
				}
				status, detail, _ := strings.Cut(want, ": ")
				if !ok || c.Status != status || !strings.Contains(c.Detail, detail) {
					t.Errorf("check %s = %+v, want %s with %q", name, c, status, detail)
				}
				if c.Status != "ok" && c.Fix == "" && name != "kvm" {
					t.Errorf("check %s is %s without a fix", name, c.Status)
				}
			}
			if c, ok := checks["kvm"]; ok && c.Status == "ok" {
				vols := f.Volumes("kmodvm")
				if len(vols) != 2 || vols[0].Name != "0123abcd-bzImage" || string(vols[0].Content) != "a kernel" {
					t.Errorf("pool volumes %+v, want the cached kernel uploaded once as 0123abcd-bzImage", vols)
				}
			}
			if doms := f.Domains(); len(doms) != 0 {
				t.Errorf("doctor left domains %v on the host", doms)
			}
		})
	}
}
