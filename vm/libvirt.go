package vm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/kmodvm/kmodvm/vm/remotehost"
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
	DomainInjectNmi(d libvirt.Domain, flags uint32) error
	DomainSaveFlags(d libvirt.Domain, to string, dxml libvirt.OptString, flags uint32) error
	DomainRestoreFlags(from string, dxml libvirt.OptString, flags uint32) error
	DomainSaveImageGetXMLDesc(file string, flags uint32) (string, error)
	ConnectGetLibVersion() (uint64, error)
	ConnectGetVersion() (uint64, error)
	NodeGetInfo() (rModel [32]int8, rMemory uint64, rCpus int32, rMhz int32, rNodes int32, rSockets int32, rCores int32, rThreads int32, err error)
	Disconnect() error
}

// Node is what a libvirt host has for its guests.
type Node struct {
	CPUs      int
	MemoryMiB int
}

// NodeOf asks the host behind lv for its CPUs and memory.
func NodeOf(lv Libvirt) (Node, error) {
	_, memKiB, cpus, _, _, _, _, _, err := lv.NodeGetInfo()
	if err != nil {
		return Node{}, fmt.Errorf("ask the libvirt host for its CPUs and memory: %w", err)
	}
	return Node{CPUs: int(cpus), MemoryMiB: int(memKiB / 1024)}, nil
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
// the path); qemu+ssh:// goes through one SSH connection of our own (vm/remotehost: host
// keys checked against known_hosts); other URIs (qemu+tcp://, qemu+tls://) go through
// go-libvirt's own dialers. When the local daemon is not running, the error says how to
// start it.
//
// The connection redials when libvirtd restarts under it (see Conn); ctx bounds the redials
// too, so it should live as long as the connection is used.
func Connect(ctx context.Context, uri string, log *slog.Logger) (*Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dialer := func(ctx context.Context) (session, error) { return dial(ctx, uri, log) }
	if remotehost.IsRemote(uri) {
		dialer = func(ctx context.Context) (session, error) { return dialRemote(ctx, uri, log) }
	}
	first, err := dialer(ctx)
	if err != nil {
		return nil, err
	}
	return newConn(ctx, uri, log, first, dialer), nil
}

// remoteSession is a libvirt connection through its own SSH connection to the host, which
// ends with it.
type remoteSession struct {
	*libvirt.Libvirt
	host *remotehost.Host
}

// ErrNotRemote is DialHostLoopback's error on a connection to this machine's daemon.
var ErrNotRemote = errors.New("not a connection to a remote host")

// DialHostLoopback connects to port on the libvirt host's own 127.0.0.1 through the
// connection's SSH connection to the host: how a remote host's guests are reached, whose
// SSH forwards listen there only. A local connection has no such path (ErrNotRemote).
func (c *Conn) DialHostLoopback(ctx context.Context, port int) (net.Conn, error) {
	s, err := c.session()
	if err != nil {
		return nil, err
	}
	rs, ok := s.(remoteSession)
	if !ok {
		return nil, ErrNotRemote
	}
	return rs.host.DialLoopback(ctx, port)
}

func (s remoteSession) Disconnect() error {
	err := s.Libvirt.Disconnect()
	return errors.Join(err, s.host.Close())
}

// remoteSockets are the system daemon's sockets on a remote host, tried in order: the
// monolithic libvirtd's, then the modular virtqemud's (a host with only virtqemud has no
// libvirt-sock). socket= in the URI names one instead.
var remoteSockets = []string{"/var/run/libvirt/libvirt-sock", "/var/run/libvirt/virtqemud-sock"}

// libvirtOverSSH is go-libvirt's socket.Dialer for the daemon's socket on a remote host.
type libvirtOverSSH struct {
	ctx  context.Context
	host *remotehost.Host
}

func (d libvirtOverSSH) Dial() (net.Conn, error) {
	ctx, cancel := context.WithTimeout(d.ctx, connectTimeout)
	defer cancel()
	t := d.host.Target()
	socks := remoteSockets
	if t.Socket != "" {
		socks = []string{t.Socket}
	}
	var errs []string
	for _, sock := range socks {
		conn, err := d.host.DialUnix(ctx, sock)
		if err == nil {
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, err.Error())
	}
	return nil, fmt.Errorf("no libvirt daemon answers on %s (%s); hint: start libvirtd or virtqemud there, check that %s may use its socket (the libvirt group) and that its sshd allows stream forwarding (AllowStreamLocalForwarding), or name the socket with ?socket=PATH in the URI",
		t.Host, strings.Join(errs, "; "), t.User)
}

// dialRemote opens one connection to the system daemon of the host a qemu+ssh:// URI names.
func dialRemote(ctx context.Context, uri string, log *slog.Logger) (session, error) {
	t, err := remotehost.ParseURI(uri)
	if err != nil {
		return nil, err
	}
	h, err := remotehost.Dial(ctx, t, log)
	if err != nil {
		return nil, fmt.Errorf("connect to libvirt %s: %w", uri, err)
	}
	l := libvirt.NewWithDialer(libvirtOverSSH{ctx, h})
	if err := l.ConnectToURI(libvirt.QEMUSystem); err != nil {
		h.Close()
		return nil, fmt.Errorf("connect to libvirt %s: %w", uri, err)
	}
	return remoteSession{l, h}, nil
}

// dial opens one connection to the libvirt daemon behind uri.
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
	if remote == libvirt.QEMUSession && u.Query().Get("socket") == "" {
		if sock, err = ensureSessionDaemon(ctx, log, sock); err != nil {
			return nil, fmt.Errorf("connect to libvirt %s: %w", uri, err)
		}
	}
	l := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(sock), dialers.WithLocalTimeout(connectTimeout)))
	if err := l.ConnectToURI(remote); err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("connect to libvirt %s: libvirtd is not running (nothing listens on %s: %w).\nhint: %s", uri, sock, err, hint)
		}
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("connect to libvirt %s: permission denied on %s: %w.\nhint: %s", uri, sock, err, accessHint(hostAccess(sock)))
		}
		return nil, fmt.Errorf("connect to libvirt %s via %s: %w", uri, sock, err)
	}
	if err := ctx.Err(); err != nil {
		_ = l.Disconnect()
		return nil, fmt.Errorf("connect to libvirt %s: %w", uri, err)
	}
	return l, nil
}

// sessionDaemons are the programs that serve qemu:///session, in order of preference, each
// with the socket it listens on in the per-user libvirt directory.
var sessionDaemons = []struct{ tool, sock string }{
	{"libvirtd", "libvirt-sock"},
	{"virtqemud", "virtqemud-sock"},
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
