package vm

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/vm/remotehost"
	"github.com/kmodvm/kmodvm/vm/sshtest"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// forwardingHost starts an in-process SSH server that forwards, with a client key file and
// a known_hosts file that holds the server's key: what a user who has logged in to a host
// once has. No SSH agent is used.
func forwardingHost(t *testing.T) (srv *sshtest.Server, keyFile, knownHostsFile string) {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	hostKey := sshtest.NewKey(t)
	keyFile, knownHostsFile = filepath.Join(dir, "id"), filepath.Join(dir, "known_hosts")
	client := sshtest.NewKeyFiles(t, keyFile)
	srv = sshtest.NewServer(t, hostKey, client.PublicKey(), sshtest.WithForwarding())
	writeKnownHost(t, knownHostsFile, srv.Addr(), hostKey.PublicKey())
	return srv, keyFile, knownHostsFile
}

func writeKnownHost(t *testing.T, file, addr string, key ssh.PublicKey) {
	t.Helper()
	if err := os.WriteFile(file, []byte(knownhosts.Line([]string{knownhosts.Normalize(addr)}, key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// remoteHost is a remotehost.Host logged in to forwardingHost's server.
func remoteHost(t *testing.T, socket string) *remotehost.Host {
	t.Helper()
	srv, keyFile, kh := forwardingHost(t)
	host, port, _ := net.SplitHostPort(srv.Addr())
	p, _ := strconv.Atoi(port)
	h, err := remotehost.Dial(t.Context(), remotehost.Target{URI: "qemu+ssh://test", User: "dev", Host: host, Port: p,
		KeyFile: keyFile, KnownHosts: []string{kh}, Socket: socket}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// The remote daemon's socket: socket= when the URI names one, else libvirtd's, then
// virtqemud's; none answering is an error that says what to check.
func TestLibvirtOverSSHSockets(t *testing.T) {
	dir := t.TempDir()
	virtqemud := filepath.Join(dir, "virtqemud-sock")
	l, err := net.Listen("unix", virtqemud)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("virtqemud"))
			c.Close()
		}
	}()
	saved := remoteSockets
	t.Cleanup(func() { remoteSockets = saved })
	remoteSockets = []string{filepath.Join(dir, "libvirt-sock"), virtqemud}

	for _, tt := range []struct {
		name, socket, want string
	}{
		{"default order falls back to virtqemud", "", "virtqemud"},
		{"socket= alone", virtqemud, "virtqemud"},
		{"socket= that nothing serves", filepath.Join(dir, "other-sock"), "no libvirt daemon answers"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := libvirtOverSSH{t.Context(), remoteHost(t, tt.socket)}
			c, err := d.Dial()
			if err != nil {
				if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "hint: ") {
					t.Fatalf("Dial: %v, want %q with a hint", err, tt.want)
				}
				return
			}
			defer c.Close()
			buf := make([]byte, 16)
			n, _ := c.Read(buf)
			if string(buf[:n]) != tt.want {
				t.Errorf("Dial reached %q, want %q", buf[:n], tt.want)
			}
		})
	}
}
