package vm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kmodvm/kmodvm/vm/hosttool"
)

// sessionIdle is how long a per-user daemon kmodvm started stays up with no client and no
// running domain (libvirtd --timeout): running guests keep it up.
const sessionIdle = 120 * time.Second

// sessionWait bounds the wait for a started daemon's socket; a variable for tests.
var sessionWait = 15 * time.Second

// sessionDaemons are the per-user daemons kmodvm can start, in order: the monolithic
// libvirtd, else the modular virtqemud with its own socket name.
var sessionDaemons = []struct{ tool, sock string }{
	{"libvirtd", "libvirt-sock"},
	{"virtqemud", "virtqemud-sock"},
}

// startDaemon runs a daemon's command; a variable so tests start a fake.
var startDaemon = func(ctx context.Context, path string, args ...string) error {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = hosttool.Env(nil)
	out, err := cmd.CombinedOutput() // -d: returns once the daemon runs in the background
	if err != nil {
		return fmt.Errorf("%s: %w: %s", path, err, out)
	}
	return nil
}

// startSession starts the per-user libvirt daemon whose socket lives in dir (…/libvirt) and
// returns the socket to dial. A file lock in dir keeps two kmodvm processes from starting
// two daemons: the second finds the first one's socket answering.
func startSession(ctx context.Context, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("start the per-user libvirt daemon: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "kmodvm-start.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", fmt.Errorf("start the per-user libvirt daemon: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("start the per-user libvirt daemon: lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing unlocks too

	var tried []string
	for _, d := range sessionDaemons {
		sock := filepath.Join(dir, d.sock)
		if answers(sock) {
			return sock, nil // started meanwhile, by another kmodvm
		}
		path, err := hosttool.Find(d.tool)
		if err != nil {
			tried = append(tried, d.tool)
			continue
		}
		if err := startDaemon(ctx, path, fmt.Sprintf("--timeout=%d", int(sessionIdle.Seconds())), "-d"); err != nil {
			return "", fmt.Errorf("start the per-user libvirt daemon: %w; hint: run `%s --timeout=%d -d` yourself and read what it says", err, d.tool, int(sessionIdle.Seconds()))
		}
		if err := waitAnswers(ctx, sock); err != nil {
			return "", fmt.Errorf("start the per-user libvirt daemon: %s started, but %w; hint: see %s", d.tool, err, filepath.Join(dir, "libvirtd.log"))
		}
		return sock, nil
	}
	return "", fmt.Errorf("start the per-user libvirt daemon: neither %v is installed; hint: sudo apt-get install %s (or use %s)",
		tried, hosttool.Package("libvirtd"), URISystem)
}

// answers reports whether something accepts connections on the unix socket sock.
func answers(sock string) bool {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// waitAnswers polls sock until it accepts connections, sessionWait at most.
func waitAnswers(ctx context.Context, sock string) error {
	ctx, cancel := context.WithTimeout(ctx, sessionWait)
	defer cancel()
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		if answers(sock) {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("nothing answers on %s after %s", sock, sessionWait)
			}
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}
