package vm

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/vm/hosttool"
)

// fakeTools makes PATH and the sbin dirs hold exactly tools (empty executables).
func fakeTools(t *testing.T, tools ...string) {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range tools {
		if err := os.WriteFile(filepath.Join(dir, tool), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
	old := hosttool.SbinDirs
	hosttool.SbinDirs = []string{t.TempDir()}
	t.Cleanup(func() { hosttool.SbinDirs = old })
}

// fakeStart replaces the daemon start: listen (when listen is true) on the socket the
// started tool would make in dir, and count the starts.
func fakeStart(t *testing.T, dir string, listen bool) *atomic.Int32 {
	t.Helper()
	var starts atomic.Int32
	old := startDaemon
	t.Cleanup(func() { startDaemon = old })
	startDaemon = func(ctx context.Context, path string, args ...string) error {
		starts.Add(1)
		if got := strings.Join(args, " "); got != "--timeout=120 -d" {
			t.Errorf("daemon started with %q", got)
		}
		if !listen {
			return nil
		}
		sock := "libvirt-sock"
		if filepath.Base(path) == "virtqemud" {
			sock = "virtqemud-sock"
		}
		l, err := net.Listen("unix", filepath.Join(dir, sock))
		if err != nil {
			return err
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		return nil
	}
	return &starts
}

func TestStartSession(t *testing.T) {
	tests := []struct {
		name      string
		tools     []string
		listen    bool
		wantSock  string // base name
		wantErr   string
		wantStart int32
	}{
		{"libvirtd", []string{"libvirtd", "virtqemud"}, true, "libvirt-sock", "", 1},
		{"only the modular daemon", []string{"virtqemud"}, true, "virtqemud-sock", "", 1},
		{"none installed", nil, true, "", "hint: sudo apt-get install libvirt-daemon", 0},
		{"started but never answers", []string{"libvirtd"}, false, "", "nothing answers on", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "libvirt")
			fakeTools(t, tt.tools...)
			starts := fakeStart(t, dir, tt.listen)
			old := sessionWait
			sessionWait = 200 * time.Millisecond
			t.Cleanup(func() { sessionWait = old })

			sock, err := startSession(context.Background(), dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("startSession = %q, %v; want an error with %q", sock, err, tt.wantErr)
				}
			} else if err != nil || filepath.Base(sock) != tt.wantSock {
				t.Fatalf("startSession = %q, %v; want socket %s", sock, err, tt.wantSock)
			}
			if starts.Load() != tt.wantStart {
				t.Errorf("daemon started %d times, want %d", starts.Load(), tt.wantStart)
			}
		})
	}
}

// Two kmodvm processes that find the daemon down start it once.
func TestStartSessionOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "libvirt")
	fakeTools(t, "libvirtd")
	starts := fakeStart(t, dir, true)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := startSession(context.Background(), dir); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if starts.Load() != 1 {
		t.Errorf("daemon started %d times by 4 callers, want 1", starts.Load())
	}
}
