package vm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/kmodvm/kmodvm/vm/hosttool"
)

// Libvirt is the part of a libvirt connection the Driver uses. *libvirt.Libvirt from
// github.com/digitalocean/go-libvirt implements it; tests use a stateful fake.
//
// go-libvirt calls take no context: the Driver checks its context between calls.
type Libvirt interface {
	DomainLookupByName(name string) (libvirt.Domain, error)
	DomainDefineXML(xml string) (libvirt.Domain, error)
	DomainCreate(d libvirt.Domain) error
	DomainGetState(d libvirt.Domain, flags uint32) (state int32, reason int32, err error)
	DomainDestroy(d libvirt.Domain) error
	DomainUndefineFlags(d libvirt.Domain, flags libvirt.DomainUndefineFlagsValues) error
	DomainGetXMLDesc(d libvirt.Domain, flags libvirt.DomainXMLFlags) (string, error)
	ConnectGetLibVersion() (uint64, error)
	Disconnect() error
}

var _ Libvirt = (*libvirt.Libvirt)(nil)

// Well-known libvirt URIs.
const (
	URISystem  = "qemu:///system"
	URISession = "qemu:///session"
)

// connectTimeout bounds dialing the libvirt socket.
const connectTimeout = 10 * time.Second

// Connect opens a connection to the libvirt daemon behind uri. qemu:///system and
// qemu:///session are dialed on their local unix sockets (a "?socket=PATH" query overrides
// the path); other URIs (qemu+ssh://, qemu+tcp://, qemu+tls://) go through go-libvirt's own
// dialers. When the local daemon is not running, the error says how to start it.
//
// The connection redials when libvirtd restarts under it (see Conn); ctx bounds the redials
// too, so it should live as long as the connection is used.
func Connect(ctx context.Context, uri string, log *slog.Logger) (*Conn, error) {
	first, err := dial(ctx, uri, log)
	if err != nil {
		return nil, err
	}
	return newConn(ctx, uri, log, first, func(ctx context.Context) (session, error) { return dial(ctx, uri, log) }), nil
}

// dial opens one connection to the libvirt daemon behind uri. For qemu:///session (at its
// usual socket) it starts the per-user daemon when none runs, as virsh does.
func dial(ctx context.Context, uri string, log *slog.Logger) (*libvirt.Libvirt, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("connect to libvirt %s: %w", uri, err)
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("connect to libvirt: bad URI %q: %w", uri, err)
	}
	if u.Scheme != "qemu" || u.Host != "" {
		l, err := libvirt.ConnectToURI(u)
		if err != nil {
			return nil, fmt.Errorf("connect to libvirt %s: %w", uri, err)
		}
		return l, nil
	}

	sock, remote, hint, err := localSocket(u)
	if err != nil {
		return nil, err
	}
	if remote == libvirt.QEMUSession && u.Query().Get("socket") == "" && !answers(sock) {
		started, err := startSession(ctx, filepath.Dir(sock))
		if err != nil {
			return nil, fmt.Errorf("connect to libvirt %s: no per-user daemon answers on %s, and %w", uri, sock, err)
		}
		log.Info("started the per-user libvirt daemon", "socket", started)
		sock = started
	}
	l := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(sock), dialers.WithLocalTimeout(connectTimeout)))
	if err := l.ConnectToURI(remote); err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("connect to libvirt %s: libvirtd is not running (nothing listens on %s: %w).\nhint: %s", uri, sock, err, hint)
		}
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("connect to libvirt %s: permission denied on %s: %w.\nhint: run kmodvm as root or as a member of the 'libvirt' group, or connect to %s instead", uri, sock, err, URISession)
		}
		return nil, fmt.Errorf("connect to libvirt %s via %s: %w", uri, sock, err)
	}
	if err := ctx.Err(); err != nil {
		_ = l.Disconnect()
		return nil, fmt.Errorf("connect to libvirt %s: %w", uri, err)
	}
	return l, nil
}

// SocketPath is the unix socket kmodvm dials for a local qemu URI (qemu:///system,
// qemu:///session, with an optional ?socket=); ok is false for remote URIs.
func SocketPath(uri string) (sock string, ok bool, err error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", false, fmt.Errorf("bad libvirt URI %q: %w", uri, err)
	}
	if u.Scheme != "qemu" || u.Host != "" {
		return "", false, nil
	}
	sock, _, _, err = localSocket(u)
	return sock, err == nil, err
}

// localSocket returns the unix socket for a local qemu URI, the URI to ask the daemon for, and
// the hint telling how to start that daemon.
func localSocket(u *url.URL) (sock string, remote libvirt.ConnectURI, hint string, err error) {
	switch u.Path {
	case "/system":
		sock = "/var/run/libvirt/libvirt-sock"
		remote = libvirt.QEMUSystem
		hint = "start it with 'libvirtd -d' and 'virtlogd -d' (or 'systemctl start libvirtd')"
	case "/session":
		dir := os.Getenv("XDG_RUNTIME_DIR")
		if dir == "" {
			home, herr := os.UserHomeDir()
			if herr != nil {
				return "", "", "", fmt.Errorf("connect to libvirt %s: neither XDG_RUNTIME_DIR nor HOME is set, cannot find the session socket", u)
			}
			dir = filepath.Join(home, ".cache")
		}
		sock = filepath.Join(dir, "libvirt", "libvirt-sock")
		remote = libvirt.QEMUSession
		hint = "start the per-user daemon as this user with 'libvirtd -d --timeout=600' (virsh -c qemu:///session does it on demand)"
	default:
		return "", "", "", fmt.Errorf("connect to libvirt: unsupported URI %q: use %s or %s", u, URISystem, URISession)
	}
	if s := u.Query().Get("socket"); s != "" {
		sock = s
	}
	return sock, remote, hint, nil
}

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
