package vm

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kmodvm/kmodvm/images/ondisk"
	"github.com/kmodvm/kmodvm/vm/hosttool"
)

// sessionDaemonTimeout is how long the per-user daemon kmodvm starts stays up when idle
// (libvirtd --timeout); the next Connect starts it again.
const sessionDaemonTimeout = "--timeout=120"

// sessionStartWait bounds the wait for a freshly started daemon's socket to accept.
const sessionStartWait = 15 * time.Second

// ensureSessionDaemon returns the socket of a per-user libvirt daemon that accepts
// connections, starting one when none does: go-libvirt does not autostart it as virsh does.
// sock is the libvirtd socket localSocket chose; its directory is where the daemon puts its
// socket (it derives it from XDG_RUNTIME_DIR or ~/.cache exactly as localSocket does, and
// inherits our environment). A flock on a file beside that directory keeps two kmodvm
// processes from starting two daemons.
func ensureSessionDaemon(ctx context.Context, log *slog.Logger, sock string) (string, error) {
	dir := filepath.Dir(sock)
	candidates := []string{sock}
	for _, d := range sessionDaemons[1:] {
		candidates = append(candidates, filepath.Join(dir, d.sock))
	}
	if s := firstAccepting(candidates); s != "" {
		return s, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create the per-user libvirt directory: %w", err)
	}
	unlock, err := ondisk.Lock(ctx, filepath.Join(filepath.Dir(dir), "kmodvm-libvirtd.lock"), nil)
	if err != nil {
		return "", err
	}
	defer unlock()
	if s := firstAccepting(candidates); s != "" {
		return s, nil // another kmodvm started it while we waited for the lock
	}

	tool, path, sockPath := "", "", ""
	for _, d := range sessionDaemons {
		if p, err := hosttool.Find(d.tool); err == nil {
			tool, path, sockPath = d.tool, p, filepath.Join(dir, d.sock)
			break
		}
	}
	if path == "" {
		return "", fmt.Errorf("the per-user libvirt daemon is not running and kmodvm cannot start it: neither libvirtd nor virtqemud is installed (looked in PATH and %s).\nhint: sudo apt-get install %s",
			strings.Join(hosttool.SbinDirs, ", "), hosttool.Package("libvirtd"))
	}
	cmdline := path + " " + sessionDaemonTimeout + " -d"
	cmd := exec.CommandContext(ctx, path, sessionDaemonTimeout, "-d")
	cmd.Env = hosttool.Env(nil)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("start the per-user libvirt daemon (%s): %w: %s.\nhint: run '%s' as this user and read its error; it comes with package %s",
			cmdline, err, strings.TrimSpace(string(out)), cmdline, hosttool.Package(tool))
	}
	if err := waitAccepting(ctx, sockPath, sessionStartWait); err != nil {
		return "", fmt.Errorf("start the per-user libvirt daemon (%s): %w.\nhint: run '%s' as this user and read its error", cmdline, err, cmdline)
	}
	log.Info("started the per-user libvirt daemon", "daemon", path, "socket", sockPath)
	return sockPath, nil
}

// firstAccepting returns the first socket that accepts a connection, "" when none does.
func firstAccepting(socks []string) string {
	for _, s := range socks {
		if accepts(s) {
			return s
		}
	}
	return ""
}

// accepts reports whether a unix socket accepts connections.
func accepts(sock string) bool {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// waitAccepting polls sock with a growing interval until it accepts, max elapses or ctx ends.
func waitAccepting(ctx context.Context, sock string, max time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		if accepts(sock) {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("nothing accepts connections on %s: %w", sock, ctx.Err())
		case <-t.C:
		}
	}
}
