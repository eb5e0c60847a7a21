package remotehost

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/vm/sshtest"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// fixture is an SSH server that forwards, a client key file and a known_hosts file that
// holds the server's key, as a user who has logged in to the host once would have.
type fixture struct {
	srv     *sshtest.Server
	hostKey ssh.Signer
	target  Target
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	hostKey := sshtest.NewKey(t)
	client := sshtest.NewKeyFiles(t, filepath.Join(dir, "id_ed25519"))
	srv := sshtest.NewServer(t, hostKey, client.PublicKey(), sshtest.WithForwarding())
	host, port, _ := net.SplitHostPort(srv.Addr())
	p, _ := strconv.Atoi(port)
	tg := Target{URI: "qemu+ssh://dev@" + srv.Addr() + "/system", User: "dev", Host: host, Port: p,
		KeyFile: filepath.Join(dir, "id_ed25519"), KnownHosts: []string{filepath.Join(dir, "known_hosts")}}
	writeKnownHosts(t, tg, hostKey.PublicKey())
	return &fixture{srv: srv, hostKey: hostKey, target: tg}
}

func writeKnownHosts(t *testing.T, tg Target, key ssh.PublicKey) {
	t.Helper()
	line := knownhosts.Line([]string{knownhosts.Normalize(tg.Addr())}, key)
	if err := os.WriteFile(tg.KnownHosts[0], []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// echoServer accepts on l and echoes each connection back with prefix in front.
func echoServer(t *testing.T, l net.Listener, prefix string) {
	t.Helper()
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				n, _ := c.Read(buf)
				c.Write(append([]byte(prefix), buf[:n]...))
			}()
		}
	}()
}

// roundTrip writes msg, reads the answer up to the far end's close and closes c, which
// must succeed though the far end closed first (libvirtd closes its socket right after
// answering "close"; go-libvirt's Disconnect reports what our Close returns).
func roundTrip(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(c)
	if err := c.Close(); err != nil {
		t.Errorf("Close after the far end closed: %v", err)
	}
	return string(got)
}

// Unix sockets and guest ports on the host's loopback are reached through the one SSH
// connection.
func TestDialUnixAndLoopback(t *testing.T) {
	fx := newFixture(t)
	sock := filepath.Join(t.TempDir(), "daemon-sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	echoServer(t, l, "daemon:")
	ctx := t.Context()
	h, err := Dial(ctx, fx.target, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := h.DialUnix(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, c, "hello"); got != "daemon:hello" {
		t.Errorf("through the unix socket: %q", got)
	}
	if _, err := h.DialUnix(ctx, sock+".missing"); err == nil || !strings.Contains(err.Error(), sock+".missing") {
		t.Errorf("DialUnix to a missing socket: %v", err)
	}

	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echoServer(t, tl, "guest:")
	c, err = h.DialLoopback(ctx, tl.Addr().(*net.TCPAddr).Port)
	if err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, c, "ssh"); got != "guest:ssh" {
		t.Errorf("through the loopback port: %q", got)
	}
	if _, err := h.DialLoopback(ctx, closedPort(t)); err == nil || !strings.Contains(err.Error(), "hint: ") {
		t.Errorf("DialLoopback to a closed port: %v", err)
	}
	if n := fx.srv.Accepted(); n != 1 {
		t.Errorf("%d SSH connections, want one for everything", n)
	}
}

func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

// Every way the login can fail says what is wrong and what to do, and the host key is never
// taken on trust.
func TestDialRefusals(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, fx *fixture)
		want  string
	}{
		{"unknown host", func(t *testing.T, fx *fixture) {
			os.WriteFile(fx.target.KnownHosts[0], nil, 0o600)
		}, "is not in"},
		{"changed host key", func(t *testing.T, fx *fixture) {
			writeKnownHosts(t, fx.target, sshtest.NewKey(t).PublicKey())
		}, "does NOT match"},
		{"revoked host key", func(t *testing.T, fx *fixture) {
			line := "@revoked " + knownhosts.Line([]string{knownhosts.Normalize(fx.target.Addr())}, fx.hostKey.PublicKey())
			os.WriteFile(fx.target.KnownHosts[0], []byte(line+"\n"), 0o600)
		}, "is revoked"},
		{"no known_hosts", func(t *testing.T, fx *fixture) {
			fx.target.KnownHosts = nil
		}, "no known_hosts file"},
		{"unreadable known_hosts", func(t *testing.T, fx *fixture) {
			fx.target.KnownHosts = []string{filepath.Join(t.TempDir(), "missing")}
		}, "read known_hosts"},
		{"key not authorized", func(t *testing.T, fx *fixture) {
			sshtest.NewKeyFiles(t, fx.target.KeyFile)
		}, "refused every key"},
		{"key with a passphrase", func(t *testing.T, fx *fixture) {
			_, priv, _ := ed25519.GenerateKey(rand.Reader)
			block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(fx.target.KeyFile, pem.EncodeToMemory(block), 0o600)
		}, "needs a passphrase"},
		{"no key at all", func(t *testing.T, fx *fixture) {
			t.Setenv("HOME", t.TempDir())
			fx.target.KeyFile = ""
		}, "no SSH key"},
		{"nothing listens", func(t *testing.T, fx *fixture) {
			fx.target.Port = closedPort(t)
		}, "connect to 127.0.0.1:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			tt.setup(t, fx)
			h, err := Dial(t.Context(), fx.target, nil)
			if err == nil {
				h.Close()
				t.Fatal("Dial succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "hint: ") {
				t.Errorf("Dial: %v\nwant %q and a hint", err, tt.want)
			}
		})
	}
}

// A host that accepts TCP but never answers is given up on when the context ends.
func TestDialStalledHandshake(t *testing.T) {
	fx := newFixture(t)
	release := fx.srv.HoldBanner()
	defer release()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if h, err := Dial(ctx, fx.target, nil); err == nil || !strings.Contains(err.Error(), "stopped waiting for the SSH handshake") {
		if h != nil {
			h.Close()
		}
		t.Fatalf("Dial to a stalled host: %v", err)
	}
}

// The client asks for the host key types known_hosts has, so a host whose preferred key is
// another type is still checked against the recorded one.
func TestKnownAlgorithms(t *testing.T) {
	fx := newFixture(t)
	cb, algos, err := hostKeyCheck(fx.target)
	if err != nil || cb == nil {
		t.Fatal(err)
	}
	if len(algos) != 1 || algos[0] != ssh.KeyAlgoED25519 {
		t.Errorf("algorithms for an ed25519 host = %v", algos)
	}
	if got := algorithmsFor(ssh.KeyAlgoRSA); len(got) != 3 || got[0] != ssh.KeyAlgoRSASHA512 {
		t.Errorf("algorithmsFor(ssh-rsa) = %v", got)
	}
	os.WriteFile(fx.target.KnownHosts[0], nil, 0o600)
	if _, algos, _ := hostKeyCheck(fx.target); algos != nil {
		t.Errorf("algorithms for an unknown host = %v, want none (the library's defaults)", algos)
	}
}
