package vm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/vm/vmtest"
)

const testPoolDir = "/var/lib/libvirt/images/kmodvm"

func TestOpenPool(t *testing.T) {
	for _, tt := range []struct {
		name      string
		before    func(t *testing.T, f *vmtest.Libvirt)
		wantCalls []string // the pool calls made, in order
	}{
		{name: "new: defined, built, autostarted, started", wantCalls: []string{
			"StoragePoolLookupByName kmodvm", "StoragePoolDefineXML kmodvm", "StoragePoolBuild kmodvm",
			"StoragePoolSetAutostart kmodvm", "StoragePoolIsActive kmodvm", "StoragePoolCreate kmodvm"}},
		{name: "defined but stopped: started", before: func(t *testing.T, f *vmtest.Libvirt) {
			if _, err := OpenPool(t.Context(), f, "kmodvm", testPoolDir); err != nil {
				t.Fatal(err)
			}
			f.StopPool("kmodvm")
		}, wantCalls: []string{"StoragePoolLookupByName kmodvm", "StoragePoolIsActive kmodvm", "StoragePoolCreate kmodvm"}},
		{name: "running: used as it is", before: func(t *testing.T, f *vmtest.Libvirt) {
			if _, err := OpenPool(t.Context(), f, "kmodvm", testPoolDir); err != nil {
				t.Fatal(err)
			}
		}, wantCalls: []string{"StoragePoolLookupByName kmodvm", "StoragePoolIsActive kmodvm"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := vmtest.NewLibvirt()
			if tt.before != nil {
				tt.before(t, f)
			}
			n := len(f.Calls())
			p, err := OpenPool(t.Context(), f, "kmodvm", testPoolDir)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Calls()[n:]; !slices.Equal(got, tt.wantCalls) {
				t.Errorf("calls %q, want %q", got, tt.wantCalls)
			}
			x, active, autostart, ok := f.Pool("kmodvm")
			if !ok || !active || !autostart || x.Type != "dir" || x.Target.Path != testPoolDir || p.Dir != testPoolDir {
				t.Errorf("pool: exists %v active %v autostart %v type %q at %q; want an active autostarted dir pool at %s", ok, active, autostart, x.Type, x.Target.Path, testPoolDir)
			}
		})
	}
}

func TestOpenPoolFailures(t *testing.T) {
	for _, method := range []string{"StoragePoolLookupByName", "StoragePoolDefineXML", "StoragePoolBuild", "StoragePoolSetAutostart", "StoragePoolIsActive", "StoragePoolCreate"} {
		t.Run(method, func(t *testing.T) {
			f := vmtest.NewLibvirt()
			denied := vmtest.Error(38, "cannot create directory '%s': Permission denied", testPoolDir)
			f.FailOn(method, denied)
			_, err := OpenPool(t.Context(), f, "kmodvm", testPoolDir)
			if err == nil || !errors.Is(err, denied) || !strings.Contains(err.Error(), `storage pool "kmodvm"`) {
				t.Errorf("OpenPool with %s failing: %v; want the error wrapped, naming the pool", method, err)
			}
		})
	}
}

// artifact writes a local file of n bytes and returns its path and content.
func artifact(t *testing.T, n int) (string, []byte) {
	t.Helper()
	content := bytes.Repeat([]byte("kmodvm!"), n/7+1)[:n]
	p := filepath.Join(t.TempDir(), "bzImage")
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, content
}

func openTestPool(t *testing.T) (*vmtest.Libvirt, *Pool) {
	t.Helper()
	f := vmtest.NewLibvirt()
	p, err := OpenPool(t.Context(), f, "kmodvm", testPoolDir)
	if err != nil {
		t.Fatal(err)
	}
	p.Poll, p.StaleAfter = time.Millisecond, 50*time.Millisecond
	return f, p
}

func countCalls(f *vmtest.Libvirt, method string) int {
	n := 0
	for _, c := range f.Calls() {
		if strings.HasPrefix(c, method+" ") {
			n++
		}
	}
	return n
}

// volumeNames lists the pool's volumes.
func volumeNames(f *vmtest.Libvirt) []string {
	var names []string
	for _, v := range f.Volumes("kmodvm") {
		names = append(names, v.Name)
	}
	return names
}

func TestPutUploadsOnce(t *testing.T) {
	f, p := openTestPool(t)
	local, content := artifact(t, 300<<10)
	var last, calls int64
	p.Progress = func(name string, done, total int64) {
		calls++
		if name != "k1-bzImage" || total != int64(len(content)) || done < last {
			t.Errorf("progress %s %d/%d after %d", name, done, total, last)
		}
		last = done
	}
	path, err := p.Put(t.Context(), "k1", "bzImage", local)
	if err != nil {
		t.Fatal(err)
	}
	if path != testPoolDir+"/k1-bzImage" {
		t.Errorf("path %q", path)
	}
	vols := f.Volumes("kmodvm")
	if len(vols) != 2 || vols[0].Name != "k1-bzImage" || !bytes.Equal(vols[0].Content, content) || vols[1].Name != "k1-bzImage.done" {
		t.Fatalf("volumes %v, want k1-bzImage with the file's bytes and its done marker", volumeNames(f))
	}
	if last != int64(len(content)) || calls < 2 {
		t.Errorf("progress ended at %d of %d after %d calls", last, len(content), calls)
	}
	// A second Put, from this client or another, reuses it.
	again, err := p.Put(t.Context(), "k1", "bzImage", local)
	if err != nil || again != path || countCalls(f, "StorageVolUpload") != 1 {
		t.Errorf("second Put: %q, %v, %d uploads; want the same path and one upload in all", again, err, countCalls(f, "StorageVolUpload"))
	}
	// Another key is another volume.
	p.Progress = nil
	if _, err := p.Put(t.Context(), "k2", "bzImage", local); err != nil || countCalls(f, "StorageVolUpload") != 2 {
		t.Errorf("Put of another key: %v, %d uploads", err, countCalls(f, "StorageVolUpload"))
	}
}

// An upload another client has under way is waited for, not repeated; one that stands
// still is replaced; a marker whose volume was removed by hand does not count.
func TestPutOthersUpload(t *testing.T) {
	t.Run("finishes while we wait", func(t *testing.T) {
		f, p := openTestPool(t)
		local, content := artifact(t, 1000)
		f.AddVolume("kmodvm", "k1-bzImage", content[:100])
		polls := 0
		f.OnCall("StorageVolGetInfo", func(string) {
			polls++
			if polls == 3 {
				go func() { // the other client finishes
					f.AddVolume("kmodvm", "k1-bzImage", content)
					f.AddVolume("kmodvm", "k1-bzImage.done", nil)
				}()
			}
		})
		p.StaleAfter = time.Hour
		path, err := p.Put(t.Context(), "k1", "bzImage", local)
		if err != nil || path != testPoolDir+"/k1-bzImage" || countCalls(f, "StorageVolUpload") != 0 {
			t.Errorf("Put: %q, %v, %d uploads; want the other client's volume, no upload", path, err, countCalls(f, "StorageVolUpload"))
		}
	})
	t.Run("abandoned", func(t *testing.T) {
		f, p := openTestPool(t)
		local, content := artifact(t, 1000)
		f.AddVolume("kmodvm", "k1-bzImage", content[:100])
		if _, err := p.Put(t.Context(), "k1", "bzImage", local); err != nil {
			t.Fatal(err)
		}
		if vols := f.Volumes("kmodvm"); len(vols) != 2 || !bytes.Equal(vols[0].Content, content) || countCalls(f, "StorageVolDelete") != 1 {
			t.Errorf("volumes %v after %d deletes; want the partial replaced by the whole file", volumeNames(f), countCalls(f, "StorageVolDelete"))
		}
	})
	t.Run("marker without its volume", func(t *testing.T) {
		f, p := openTestPool(t)
		local, content := artifact(t, 1000)
		f.AddVolume("kmodvm", "k1-bzImage.done", nil)
		if _, err := p.Put(t.Context(), "k1", "bzImage", local); err != nil {
			t.Fatal(err)
		}
		if vols := f.Volumes("kmodvm"); len(vols) != 2 || !bytes.Equal(vols[0].Content, content) {
			t.Errorf("volumes %v; want the file uploaded and marked anew", volumeNames(f))
		}
	})
	t.Run("cancelled while waiting", func(t *testing.T) {
		f, p := openTestPool(t)
		local, content := artifact(t, 1000)
		f.AddVolume("kmodvm", "k1-bzImage", content[:100])
		p.StaleAfter = time.Hour
		ctx, cancel := context.WithCancel(t.Context())
		f.OnCall("StorageVolGetInfo", func(string) { cancel() })
		if _, err := p.Put(ctx, "k1", "bzImage", local); !errors.Is(err, context.Canceled) {
			t.Errorf("Put: %v, want context.Canceled", err)
		}
		if got := volumeNames(f); !slices.Equal(got, []string{"k1-bzImage"}) {
			t.Errorf("volumes %v: the other client's upload must be left alone", got)
		}
	})
}

// An upload that fails or is cancelled leaves nothing: no volume, no marker.
func TestPutFailures(t *testing.T) {
	denied := vmtest.Error(38, "Permission denied")
	for _, tt := range []struct {
		name    string
		setup   func(f *vmtest.Libvirt, cancel context.CancelFunc)
		local   string // "" the artifact
		wantErr error
		want    string
	}{
		{name: "upload fails", setup: func(f *vmtest.Libvirt, _ context.CancelFunc) { f.FailOn("StorageVolUpload", denied) },
			wantErr: denied, want: `upload `},
		{name: "create fails", setup: func(f *vmtest.Libvirt, _ context.CancelFunc) { f.FailOn("StorageVolCreateXML", denied) },
			wantErr: denied, want: `create volume k1-bzImage in pool "kmodvm"`},
		{name: "cancelled during the upload", setup: func(f *vmtest.Libvirt, cancel context.CancelFunc) {
			f.OnCall("StorageVolUpload", func(string) { cancel() })
		}, wantErr: context.Canceled},
		{name: "refresh fails", setup: func(f *vmtest.Libvirt, _ context.CancelFunc) { f.FailOn("StoragePoolRefresh", denied) },
			wantErr: denied, want: `refresh storage pool "kmodvm"`},
		{name: "no local file", local: "/nonexistent/bzImage", wantErr: os.ErrNotExist, want: "upload /nonexistent/bzImage"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, p := openTestPool(t)
			local, _ := artifact(t, 200<<10)
			if tt.local != "" {
				local = tt.local
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.setup != nil {
				tt.setup(f, cancel)
			}
			_, err := p.Put(ctx, "k1", "bzImage", local)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Put: %v; want %v, saying %q", err, tt.wantErr, tt.want)
			}
			if got := volumeNames(f); len(got) != 0 {
				t.Errorf("a failed Put left volumes %v", got)
			}
		})
	}
}

func TestOverlayAndRemove(t *testing.T) {
	f, p := openTestPool(t)
	local, _ := artifact(t, 1000)
	base, err := p.Put(t.Context(), "img1", "base.qcow2", local)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // a second Overlay replaces the first
		path, err := p.Overlay(t.Context(), "kmodvm-0-dev.qcow2", base, 8<<30)
		if err != nil || path != testPoolDir+"/kmodvm-0-dev.qcow2" {
			t.Fatalf("Overlay: %q, %v", path, err)
		}
	}
	var ov *vmtest.Volume
	for _, v := range f.Volumes("kmodvm") {
		if v.Name == "kmodvm-0-dev.qcow2" {
			ov = &v
		}
	}
	if ov == nil || ov.Format != "qcow2" || ov.Backing != base || ov.Capacity != 8<<30 {
		t.Fatalf("overlay %+v; want a qcow2 of 8 GiB backed by %s", ov, base)
	}
	for _, name := range []string{"kmodvm-0-dev.qcow2", "img1-base.qcow2", "not-there"} {
		if err := p.Remove(t.Context(), name); err != nil {
			t.Errorf("Remove(%s): %v", name, err)
		}
	}
	if got := volumeNames(f); len(got) != 0 {
		t.Errorf("volumes left after Remove: %v", got)
	}
	f.SetPoolAvailable("kmodvm", 42<<30)
	if avail, err := p.Available(); err != nil || avail != 42<<30 {
		t.Errorf("Available = %d, %v; want 42 GiB", avail, err)
	}
}

// A console log on the host: an empty volume its daemon appends to, read back from an
// offset.
func TestEmptyAndDownload(t *testing.T) {
	f, p := openTestPool(t)
	path, err := p.Empty(t.Context(), "dev.console.log")
	if err != nil || path != testPoolDir+"/dev.console.log" {
		t.Fatalf("Empty: %q, %v", path, err)
	}
	f.AppendVolume("kmodvm", "dev.console.log", []byte("[    0.000000] Linux version 7.2.13\n[    1.000000] ready\n"))
	var b bytes.Buffer
	if err := p.Download(t.Context(), "dev.console.log", 36, &b); err != nil || b.String() != "[    1.000000] ready\n" {
		t.Errorf("Download from 36: %q, %v", b.String(), err)
	}
	if _, err := p.Empty(t.Context(), "dev.console.log"); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if err := p.Download(t.Context(), "dev.console.log", 0, &b); err != nil || b.Len() != 0 {
		t.Errorf("a second Empty did not empty it: %q, %v", b.String(), err)
	}
	if err := p.Download(t.Context(), "nope", 0, &b); err == nil || !strings.Contains(err.Error(), "look up volume nope") {
		t.Errorf("Download of a missing volume: %v", err)
	}
}
