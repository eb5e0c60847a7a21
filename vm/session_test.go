package vm

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/vm/hosttool"
)

// TestMain lets the test binary play a per-user libvirt daemon (see fakeDaemons): run as
// "libvirtd --timeout=120 -d" it records the start, forks a server on the socket and exits,
// as the real daemon does.
func TestMain(m *testing.M) {
	switch mode := os.Getenv("KMODVM_FAKE_DAEMON"); mode {
	case "":
		os.Exit(m.Run())
	case "serve":
		fakeDaemonServe(os.Getenv("KMODVM_FAKE_SOCK"))
	default:
		os.Exit(fakeDaemonStart(mode))
	}
}

// fakeDaemonStart is the daemon's command line: it records itself in KMODVM_FAKE_DAEMON_LOG
// and starts a server on $XDG_RUNTIME_DIR/libvirt/SOCK in the background.
func fakeDaemonStart(sock string) int {
	f, err := os.OpenFile(os.Getenv("KMODVM_FAKE_DAEMON_LOG"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintf(f, "%s %s\n", sock, strings.Join(os.Args[1:], " "))
	f.Close()
	if os.Getenv("KMODVM_FAKE_DAEMON_FAIL") != "" {
		fmt.Fprintln(os.Stderr, "error: unable to initialize network sockets")
		return 1
	}
	srv := exec.Command(os.Args[0])
	srv.Env = append(os.Environ(), "KMODVM_FAKE_DAEMON=serve",
		"KMODVM_FAKE_SOCK="+filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "libvirt", sock))
	if err := srv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// fakeDaemonServe accepts (and closes) connections on sock for at most a minute; the test
// kills it sooner through the pid file beside the socket.
func fakeDaemonServe(sock string) {
	time.Sleep(50 * time.Millisecond) // a real daemon is not listening the moment -d returns
	l, err := net.Listen("unix", sock)
	if err != nil {
		os.Exit(1)
	}
	_ = os.WriteFile(sock+".pid", []byte(strconv.Itoa(os.Getpid())), 0o600)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	time.Sleep(time.Minute)
	os.Exit(0)
}

// fakeDaemons installs fake daemon programs (tool → socket name) as the only ones
// hosttool finds, and returns the socket directory and the start log.
func fakeDaemons(t *testing.T, tools map[string]string) (sockDir, startLog string) {
	t.Helper()
	bin, runtime := t.TempDir(), t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for tool, sock := range tools {
		script := fmt.Sprintf("#!/bin/sh\nKMODVM_FAKE_DAEMON=%s exec %q \"$@\"\n", sock, self)
		if err := os.WriteFile(filepath.Join(bin, tool), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	saved := hosttool.SbinDirs
	hosttool.SbinDirs = []string{bin}
	t.Setenv("PATH", t.TempDir())
	t.Setenv("XDG_RUNTIME_DIR", runtime)
	startLog = filepath.Join(t.TempDir(), "starts")
	t.Setenv("KMODVM_FAKE_DAEMON_LOG", startLog)
	sockDir = filepath.Join(runtime, "libvirt")
	t.Cleanup(func() {
		hosttool.SbinDirs = saved
		for _, s := range tools {
			if b, err := os.ReadFile(filepath.Join(sockDir, s+".pid")); err == nil {
				if pid, err := strconv.Atoi(string(b)); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	})
	return sockDir, startLog
}

func starts(t *testing.T, startLog string) []string {
	t.Helper()
	b, err := os.ReadFile(startLog)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSessionDaemonStartedOnce(t *testing.T) {
	dir, startLog := fakeDaemons(t, map[string]string{"libvirtd": "libvirt-sock", "virtqemud": "virtqemud-sock"})
	var logBuf bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logBuf.Write(p)
	}), nil))
	want := filepath.Join(dir, "libvirt-sock")

	var wg sync.WaitGroup
	got := make([]string, 3)
	errs := make([]error, 3)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = ensureSessionDaemon(testCtx(t), log, want)
		}()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || got[i] != want {
			t.Fatalf("caller %d: socket %q, %v; want %q", i, got[i], errs[i], want)
		}
	}
	if s := starts(t, startLog); len(s) != 1 || s[0] != "libvirt-sock --timeout=120 -d" {
		t.Errorf("daemon starts = %q, want one 'libvirtd --timeout=120 -d'", s)
	}
	if !accepts(want) {
		t.Error("the socket does not accept connections")
	}
	if n := strings.Count(logBuf.String(), "started the per-user libvirt daemon"); n != 1 {
		t.Errorf("log has %d start lines, want 1:\n%s", n, logBuf.String())
	}
	// Running: no second start.
	if s, err := ensureSessionDaemon(testCtx(t), log, want); err != nil || s != want {
		t.Fatalf("again: %q, %v", s, err)
	}
	if s := starts(t, startLog); len(s) != 1 {
		t.Errorf("daemon starts after a second connect = %q, want one", s)
	}
}

func TestSessionDaemonVirtqemudFallback(t *testing.T) {
	dir, startLog := fakeDaemons(t, map[string]string{"virtqemud": "virtqemud-sock"})
	got, err := ensureSessionDaemon(testCtx(t), slog.New(slog.DiscardHandler), filepath.Join(dir, "libvirt-sock"))
	if want := filepath.Join(dir, "virtqemud-sock"); err != nil || got != want {
		t.Fatalf("socket %q, %v; want %q", got, err, want)
	}
	if s := starts(t, startLog); len(s) != 1 || !strings.HasPrefix(s[0], "virtqemud-sock ") {
		t.Errorf("daemon starts = %q, want virtqemud once", s)
	}
}

func TestSessionDaemonErrors(t *testing.T) {
	tests := []struct {
		name  string
		tools map[string]string
		fail  bool
		want  []string
	}{
		{"not installed", nil, false, []string{"neither libvirtd nor virtqemud is installed", "hint: sudo apt-get install libvirt-daemon"}},
		{"fails to start", map[string]string{"libvirtd": "libvirt-sock"}, true,
			[]string{"unable to initialize network sockets", "hint: run '", "libvirtd --timeout=120 -d' as this user", "package libvirt-daemon"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := fakeDaemons(t, tt.tools)
			if tt.fail {
				t.Setenv("KMODVM_FAKE_DAEMON_FAIL", "1")
			}
			_, err := ensureSessionDaemon(testCtx(t), slog.New(slog.DiscardHandler), filepath.Join(dir, "libvirt-sock"))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
