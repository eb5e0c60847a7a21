package remotehost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// dialTimeout bounds the TCP connect and the SSH handshake with the host; channels opened
// through the connection have no deadlines of their own, so each open is bounded by its
// context instead.
const dialTimeout = 20 * time.Second

// Host is one SSH connection to a libvirt host.
type Host struct {
	target Target
	client *ssh.Client
	agent  net.Conn // the SSH agent's socket, when it was used
	log    *slog.Logger
}

// Dial connects and logs in to t, checking its host key against t.KnownHosts.
func Dial(ctx context.Context, t Target, log *slog.Logger) (*Host, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Host{target: t, log: log}
	auth, err := h.authMethods()
	if err != nil {
		return nil, err
	}
	hostKey, algos, err := hostKeyCheck(t)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{User: t.User, Auth: auth, HostKeyCallback: hostKey, HostKeyAlgorithms: algos}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", t.Addr())
	if err != nil {
		h.closeAgent()
		return nil, fmt.Errorf("connect to %s for %s: %w; hint: check that `%s` logs in", t.Addr(), t.URI, err, t.sshCommand())
	}
	// The handshake has no context: closing the connection ends it when ctx does.
	stop := context.AfterFunc(dctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, t.Addr(), cfg)
	if !stop() {
		if err == nil {
			c.Close()
		}
		err = fmt.Errorf("stopped waiting for the SSH handshake (at most %s): %w", dialTimeout, context.Cause(dctx))
	}
	if err != nil {
		conn.Close()
		h.closeAgent()
		return nil, h.explain(err)
	}
	h.client = ssh.NewClient(c, chans, reqs)
	log.Info("connected to the libvirt host", "host", t.Addr(), "user", t.User)
	return h, nil
}

// Close ends the connection and every channel on it.
func (h *Host) Close() error {
	h.closeAgent()
	return h.client.Close()
}

// Target is where h is connected.
func (h *Host) Target() Target { return h.target }

// DialUnix opens a connection to the unix socket at path on the host.
func (h *Host) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	conn, err := h.client.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connect to %s on %s: %w", path, h.target.Host, err)
	}
	return channelConn{conn}, nil
}

// DialLoopback opens a connection to port on the host's own 127.0.0.1: where the host's
// QEMU forwards a guest's SSH, which never listens on any other address.
func (h *Host) DialLoopback(ctx context.Context, port int) (net.Conn, error) {
	conn, err := h.client.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)))
	if err != nil {
		return nil, fmt.Errorf("connect to 127.0.0.1:%d on %s: %w; hint: its sshd must allow TCP forwarding (AllowTcpForwarding)", port, h.target.Host, err)
	}
	return channelConn{conn}, nil
}

// channelConn is a connection forwarded over the SSH connection. When the far end closes
// first (libvirtd does, once it has answered "close"), x/crypto/ssh answers that close
// itself and a Close of ours then reports io.EOF: the channel is closed, which is what
// Close is for, so that is no error.
type channelConn struct{ net.Conn }

func (c channelConn) Close() error {
	if err := c.Conn.Close(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// authMethods are the keys to offer: keyfile= alone when given; else the agent's keys
// (unless sshauth= leaves the agent out) and the default key files that need no passphrase.
func (h *Host) authMethods() ([]ssh.AuthMethod, error) {
	t := h.target
	if t.KeyFile != "" {
		s, err := loadKey(t.KeyFile)
		if err != nil {
			return nil, err
		}
		return []ssh.AuthMethod{ssh.PublicKeys(s)}, nil
	}
	var methods []ssh.AuthMethod
	if sock := os.Getenv("SSH_AUTH_SOCK"); t.Agent && sock != "" {
		if conn, err := net.Dial("unix", sock); err == nil {
			h.agent = conn
			methods = append(methods, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
		} else {
			h.log.Warn("cannot reach the SSH agent", "socket", sock, "err", err)
		}
	}
	home, _ := os.UserHomeDir()
	var signers []ssh.Signer
	for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		if s, err := loadKey(filepath.Join(home, ".ssh", name)); err == nil {
			signers = append(signers, s)
		}
	}
	if len(signers) > 0 {
		methods = append(methods, ssh.PublicKeys(signers...))
	}
	if len(methods) == 0 {
		return nil, fmt.Errorf("no SSH key to log in to %s with: no agent (SSH_AUTH_SOCK) and no ~/.ssh/id_ed25519, id_ecdsa or id_rsa without a passphrase; hint: add keyfile=PATH to the URI, or load your key with ssh-add", t.URI)
	}
	return methods, nil
}

func (h *Host) closeAgent() {
	if h.agent != nil {
		h.agent.Close()
		h.agent = nil
	}
}

// loadKey reads an unencrypted private key.
func loadKey(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read SSH key: %w; hint: keyfile= in the URI names the private key file", err)
	}
	s, err := ssh.ParsePrivateKey(data)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("SSH key %s needs a passphrase, which kmodvm does not ask for; hint: load it into your agent with `ssh-add %s` and drop keyfile= from the URI", path, path)
	}
	if err != nil {
		return nil, fmt.Errorf("SSH key %s: %w; hint: keyfile= must name an OpenSSH private key", path, err)
	}
	return s, nil
}

// hostKeyCheck is the known_hosts check for t, and the host key algorithms that match the
// keys recorded for it (so a host with an ed25519 and an RSA key is asked for one known_hosts
// has, not whichever it prefers).
func hostKeyCheck(t Target) (ssh.HostKeyCallback, []string, error) {
	if len(t.KnownHosts) == 0 {
		return nil, nil, fmt.Errorf("no known_hosts file to check the key of %s against; hint: log in once with `%s`, check the fingerprint it shows, and it is recorded in ~/.ssh/known_hosts", t.Host, t.sshCommand())
	}
	cb, err := knownhosts.New(t.KnownHosts...)
	if err != nil {
		return nil, nil, fmt.Errorf("read known_hosts (%s): %w; hint: known_hosts= in the URI names the file", strings.Join(t.KnownHosts, ", "), err)
	}
	return cb, knownAlgorithms(cb, t), nil
}

// knownAlgorithms asks cb which keys it has for t (a probe key it cannot know makes it list
// them) and returns the host key algorithms for those key types, nil when it has none.
func knownAlgorithms(cb ssh.HostKeyCallback, t Target) []string {
	addr := &net.TCPAddr{IP: net.IPv4zero, Port: t.Port}
	err := cb(t.Addr(), addr, probeKey{})
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	for _, k := range ke.Want {
		for _, a := range algorithmsFor(k.Key.Type()) {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// algorithmsFor maps a key type to the signature algorithms a server may use with it.
func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// probeKey is a public key no known_hosts file holds.
type probeKey struct{}

func (probeKey) Type() string                        { return "kmodvm-probe" }
func (probeKey) Marshal() []byte                     { return []byte("kmodvm-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key") }

// explain turns a failed handshake into what to do about it.
func (h *Host) explain(err error) error {
	t := h.target
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &ke) && len(ke.Want) == 0:
		return fmt.Errorf("the host key of %s is not in %s, so kmodvm cannot tell it is the right host; hint: log in once with `%s`, check the fingerprint it shows, and it is recorded", t.knownHostsName(), strings.Join(t.KnownHosts, ", "), t.sshCommand())
	case errors.As(err, &ke):
		return fmt.Errorf("the host key of %s does NOT match the one recorded in %s:%d: someone may be intercepting the connection, or the host was reinstalled; hint: if you know it was reinstalled, remove the old key with `ssh-keygen -R '%s'` and log in once with `%s` to check and record the new one", t.knownHostsName(), ke.Want[0].Filename, ke.Want[0].Line, t.knownHostsName(), t.sshCommand())
	case errors.As(err, &re):
		return fmt.Errorf("the host key of %s is revoked in %s:%d; hint: ask the host's administrator which key it should have", t.knownHostsName(), re.Revoked.Filename, re.Revoked.Line)
	case strings.Contains(err.Error(), "unable to authenticate"):
		return fmt.Errorf("%s refused every key kmodvm offered for %s: %w; hint: check that `%s` logs in without a password", t.Host, t.User, err, t.sshCommand())
	}
	return fmt.Errorf("SSH to %s for %s: %w; hint: check that `%s` logs in", t.Addr(), t.URI, err, t.sshCommand())
}
