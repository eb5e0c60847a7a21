// Package sshclient reaches a sandbox guest over SSH: it dials the guest's forwarded port
// (waiting for sshd's banner), accepts only the pinned host key, runs commands and shells,
// keeps the connection alive, and opens SFTP. The guest's domain is package vm's business.
package sshclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kmodvm/kmodvm/vm/remedy"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Defaults for the optional timing fields of Config.
const (
	DefaultBannerTimeout    = 2 * time.Second
	DefaultHandshakeTimeout = 30 * time.Second
	DefaultRetryInterval    = 500 * time.Millisecond
	DefaultKeepAlive        = 15 * time.Second
	// keepAliveMissed unanswered keepalives in a row close the connection.
	keepAliveMissed = 3
)

// Config says how to reach a guest's sshd. The guest is only reachable
// through QEMU's user-mode port forward on 127.0.0.1, and its host key is
// always pinned: there is no way to skip host key verification.
type Config struct {
	Addr    string        // "127.0.0.1:PORT"
	User    string        // "root"
	Signer  ssh.Signer    // client key
	HostKey ssh.PublicKey // the guest's pinned host key

	// KeyFile and HostKeyFile only name the files in error messages
	// (LoadConfig sets them); VM names the VM in their hints.
	KeyFile     string
	HostKeyFile string
	VM          string

	// Dial opens the connection to Addr; nil dials TCP from this host. A remote libvirt
	// host's guests are reached through its SSH connection instead.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// Optional timing; zero means the Default* value.
	BannerTimeout    time.Duration // how long one probe waits for the "SSH-" banner
	HandshakeTimeout time.Duration // key exchange and login
	RetryInterval    time.Duration // between Wait attempts
	KeepAlive        time.Duration // keepalive interval; negative disables keepalives
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// LoadConfig reads the client's private key from keyFile, which must not
// be accessible by group or others (mode 0600 or stricter), and the guest's
// pinned host key from hostPubFile, one line in authorized_keys format.
func LoadConfig(addr, user, keyFile, hostPubFile string) (Config, error) {
	fi, err := os.Stat(keyFile)
	if err != nil {
		return Config{}, fmt.Errorf("read ssh private key: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return Config{}, fmt.Errorf("ssh private key %s has mode %04o, so other users can read it; "+
			"a private key must be readable by its owner only. hint: chmod 600 %s", keyFile, perm, keyFile)
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return Config{}, fmt.Errorf("read ssh private key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return Config{}, fmt.Errorf("parse ssh private key %s: %w; it must be an unencrypted OpenSSH private key", keyFile, err)
	}
	data, err = os.ReadFile(hostPubFile)
	if err != nil {
		return Config{}, fmt.Errorf("read pinned guest host key: %w", err)
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return Config{}, fmt.Errorf("parse pinned guest host key %s: %w; it must be one line like \"ssh-ed25519 AAAA... comment\"", hostPubFile, err)
	}
	return Config{
		Addr:        addr,
		User:        user,
		Signer:      signer,
		HostKey:     hostKey,
		KeyFile:     keyFile,
		HostKeyFile: hostPubFile,
	}, nil
}

// HostKeyMismatchError means the guest presented a host key other than the
// pinned one.
type HostKeyMismatchError struct {
	Addr   string
	Pinned string // SHA256 fingerprint of the pinned key
	Got    string // SHA256 fingerprint of the key the guest offered
	File   string // where the pinned key came from, if known
}

func (e *HostKeyMismatchError) Error() string {
	from := ""
	if e.File != "" {
		from = " from " + e.File
	}
	return fmt.Sprintf("host key of guest at %s does not match the pinned key (pinned %s%s, guest offered %s); "+
		"the image or VM was replaced, or another program answers on that port, so nothing was sent to it",
		e.Addr, e.Pinned, from, e.Got)
}

// AuthError means the guest's sshd refused the client key.
type AuthError struct {
	Addr, User, KeyFile string
	Err                 error
}

func (e *AuthError) Error() string {
	key := "the client key"
	if e.KeyFile != "" {
		key = e.KeyFile
	}
	return fmt.Sprintf("log in as %s to guest at %s: %v; the guest's sshd refused %s: "+
		"the image's authorized_keys must hold the public key of %s",
		e.User, e.Addr, e.Err, key, key)
}

func (e *AuthError) Unwrap() error { return e.Err }

func (cfg Config) validate() error {
	switch {
	case cfg.Addr == "":
		return errors.New("ssh config: no address")
	case cfg.User == "":
		return errors.New("ssh config: no user")
	case cfg.Signer == nil:
		return errors.New("ssh config: no client key")
	case cfg.HostKey == nil:
		return errors.New("ssh config: no pinned host key; kmodvm never connects to a guest without one")
	}
	return nil
}

// Dial makes one attempt to connect and log in.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	conn, err := dialBanner(ctx, cfg)
	if err != nil {
		return nil, err
	}
	c, _, err := handshake(ctx, cfg, conn)
	return c, err
}

// Wait waits until the guest's sshd answers and logs in. QEMU's slirp
// accepts TCP connections before the guest's sshd listens, so each attempt
// first waits briefly for the "SSH-" banner; only once it arrives does the
// attempt go on to the handshake, on the same connection. A refused login or
// a wrong host key ends the wait at once: login is attempted only when sshd
// is known to be up, and never retried after a refusal.
//
// alive, if not nil, is called before every attempt; its error aborts the
// wait (e.g. "domain is no longer running").
func Wait(ctx context.Context, cfg Config, alive func() error) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ticker := time.NewTicker(orDefault(cfg.RetryInterval, DefaultRetryInterval))
	defer ticker.Stop()
	var lastErr error
	for {
		if alive != nil {
			if err := alive(); err != nil {
				return nil, fmt.Errorf("wait for ssh on guest at %s: %w", cfg.Addr, err)
			}
		}
		c, retry, err := dialOnce(ctx, cfg)
		if err == nil {
			return c, nil
		}
		if !retry {
			return nil, err
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for ssh on guest at %s: %w (last attempt: %v)", cfg.Addr, ctx.Err(), lastErr)
		case <-ticker.C:
		}
	}
}

// dialOnce makes one attempt and says whether a failure is worth retrying.
func dialOnce(ctx context.Context, cfg Config) (c *Client, retry bool, err error) {
	conn, err := dialBanner(ctx, cfg)
	if err != nil {
		return nil, ctx.Err() == nil, err
	}
	c, kexDone, err := handshake(ctx, cfg, conn)
	if err == nil {
		return c, false, nil
	}
	var mismatch *HostKeyMismatchError
	switch {
	case ctx.Err() != nil, errors.As(err, &mismatch):
		return nil, false, err
	case kexDone && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET):
		// The host key was verified, so sshd is up and the failure
		// came from the login itself: retrying would only add failed
		// logins.
		return nil, false, err
	}
	return nil, true, err
}

// dialBanner connects and reads until the server's "SSH-" version line has
// arrived. The returned connection replays what was read.
func dialBanner(ctx context.Context, cfg Config) (net.Conn, error) {
	dial := cfg.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("connect to guest ssh at %s: %w", cfg.Addr, err)
	}
	timeout := orDefault(cfg.BannerTimeout, DefaultBannerTimeout)
	expired := closeAfter(conn, timeout)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	banner, err := readBanner(conn)
	timedOut := expired()
	if !stop() {
		conn.Close()
		return nil, fmt.Errorf("connect to guest ssh at %s: %w", cfg.Addr, ctx.Err())
	}
	if timedOut {
		conn.Close()
		return nil, fmt.Errorf("no ssh banner from guest at %s within %s (sshd not up yet)", cfg.Addr, timeout)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("read ssh banner from guest at %s: %w", cfg.Addr, err)
	}
	return &replayConn{Conn: conn, r: io.MultiReader(bytes.NewReader(banner), conn)}, nil
}

// closeAfter closes conn once d has passed, unless the returned func is called first; that
// func stops the timer and reports whether it had fired. A timer rather than a deadline: a
// connection carried by an SSH channel (a remote host's loopback port) has no deadlines.
func closeAfter(conn net.Conn, d time.Duration) (expired func() bool) {
	var fired atomic.Bool
	t := time.AfterFunc(d, func() {
		fired.Store(true)
		conn.Close()
	})
	return func() bool {
		t.Stop()
		return fired.Load()
	}
}

// readBanner reads until a line starting with "SSH-" has begun (servers
// may send other lines first, RFC 4253 section 4.2).
func readBanner(r io.Reader) ([]byte, error) {
	const limit = 8192
	buf := make([]byte, 0, 256)
	tmp := make([]byte, 256)
	for len(buf) < limit {
		n, err := r.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if bytes.HasPrefix(buf, []byte("SSH-")) || bytes.Contains(buf, []byte("\nSSH-")) {
			return buf, nil
		}
		if err == io.EOF {
			return nil, errors.New("connection closed before the banner (sshd not up yet)")
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("no SSH version line in the first %d bytes", limit)
}

type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func hostKeyAlgorithms(k ssh.PublicKey) []string {
	if k.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	return []string{k.Type()}
}

// handshake runs key exchange and login on conn, which it closes on
// failure. kexDone reports whether the host key was verified.
func handshake(ctx context.Context, cfg Config, conn net.Conn) (c *Client, kexDone bool, err error) {
	var verified atomic.Bool
	pinned := cfg.HostKey.Marshal()
	ccfg := &ssh.ClientConfig{
		User: cfg.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(cfg.Signer)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if !bytes.Equal(key.Marshal(), pinned) {
				return &HostKeyMismatchError{
					Addr:   cfg.Addr,
					Pinned: ssh.FingerprintSHA256(cfg.HostKey),
					Got:    ssh.FingerprintSHA256(key),
					File:   cfg.HostKeyFile,
				}
			}
			verified.Store(true)
			return nil
		},
		// Offer only the pinned key's algorithm, or the server may pick
		// another of its host keys and fail the pin.
		HostKeyAlgorithms: hostKeyAlgorithms(cfg.HostKey),
	}
	timeout := orDefault(cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	expired := closeAfter(conn, timeout)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	sconn, chans, reqs, err := ssh.NewClientConn(conn, cfg.Addr, ccfg)
	timedOut := expired()
	if !stop() {
		conn.Close()
		return nil, verified.Load(), fmt.Errorf("ssh handshake with guest at %s: %w", cfg.Addr, ctx.Err())
	}
	if timedOut {
		conn.Close()
		return nil, verified.Load(), fmt.Errorf("ssh handshake with guest at %s: no answer within %s", cfg.Addr, timeout)
	}
	if err != nil {
		conn.Close()
		var mismatch *HostKeyMismatchError
		switch {
		case errors.As(err, &mismatch):
			return nil, false, remedy.With(mismatch, cfg.VM, remedy.RecreateVM)
		case verified.Load() && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET):
			return nil, true, remedy.WithNote(&AuthError{Addr: cfg.Addr, User: cfg.User, KeyFile: cfg.KeyFile, Err: err},
				cfg.VM, "rebuild the image, then", remedy.RecreateVM)
		}
		return nil, verified.Load(), fmt.Errorf("ssh handshake with guest at %s: %w", cfg.Addr, err)
	}
	return newClient(cfg, sconn, chans, reqs), true, nil
}

// Client is one SSH connection to a guest; sessions (commands, shells,
// SFTP) are multiplexed on it.
type Client struct {
	addr   string
	client *ssh.Client
	done   chan struct{}

	mu  sync.Mutex
	err error // why the connection ended
}

func newClient(cfg Config, conn ssh.Conn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) *Client {
	c := &Client{addr: cfg.Addr, client: ssh.NewClient(conn, chans, reqs), done: make(chan struct{})}
	go func() {
		err := c.client.Wait()
		c.setErr(fmt.Errorf("ssh connection to guest at %s ended: %w", c.addr, err))
		close(c.done)
	}()
	if ka := orDefault(cfg.KeepAlive, DefaultKeepAlive); ka > 0 {
		go c.keepAlive(ka)
	}
	return c
}

func (c *Client) setErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// keepAlive closes the connection when the guest stops answering keepalive
// requests: a guest whose kernel hangs keeps the slirp TCP connection open,
// so without this Done would never fire.
func (c *Client) keepAlive(interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-ticker.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		timer := time.NewTimer(keepAliveMissed * interval)
		select {
		case <-c.done:
			timer.Stop()
			return
		case err := <-reply:
			timer.Stop()
			if err != nil {
				c.client.Close()
				return
			}
		case <-timer.C:
			c.setErr(fmt.Errorf("guest at %s stopped answering ssh keepalives for %s (guest hung or crashed)", c.addr, keepAliveMissed*interval))
			c.client.Close()
			return
		}
	}
}

// Done is closed when the connection has ended, whether by Close, by the
// guest or QEMU going away, or by unanswered keepalives.
func (c *Client) Done() <-chan struct{} { return c.done }

// Lost reports whether the connection has ended, waiting up to d for it to be noticed: a
// write can fail on a dropped connection just before the reader sees it go.
func (c *Client) Lost(d time.Duration) bool {
	select {
	case <-c.done:
		return true
	case <-time.After(d):
		return false
	}
}

// Err says why the connection ended; nil while it is up.
func (c *Client) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection and waits until Done is closed.
func (c *Client) Close() error {
	c.setErr(fmt.Errorf("ssh connection to guest at %s closed", c.addr))
	err := c.client.Close()
	<-c.done
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Run runs cmd through the guest user's shell, with the given stdin
// (nil: empty), stdout and stderr (nil: discarded). cmd is a shell command
// line: build it with shellquote.Quote/Join. exitCode is the remote exit status
// (128+N if killed by signal N); err is non-nil only if the command could not
// be run to its end: transport failure, lost connection, or ctx cancelled,
// in which case the command is sent SIGTERM and its session closed.
//
// Run returns when the command has exited even if stdin has not reached
// EOF (a goroutine then stays blocked in stdin's Read until it returns).
// After a cancel, Run waits a few seconds at most for the session to wind
// down; only on a guest that stopped answering can stdout or stderr be
// written to after Run has returned.
func (c *Client) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) (exitCode int, err error) {
	sess, err := c.session(stdin, stdout, stderr)
	if err != nil {
		return -1, err
	}
	defer sess.Close()
	if err := sess.Start(cmd); err != nil {
		return -1, fmt.Errorf("start %s on guest at %s: %w", shortCmd(cmd), c.addr, err)
	}
	return c.wait(ctx, sess, shortCmd(cmd))
}

// Output runs cmd and returns its stdout. A nonzero exit status is an error
// that includes the end of stderr.
func (c *Client) Output(ctx context.Context, cmd string) ([]byte, error) {
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: 2048}
	code, err := c.Run(ctx, cmd, nil, &stdout, stderr)
	if err != nil {
		return stdout.Bytes(), err
	}
	if code != 0 {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = "(no stderr)"
		}
		return stdout.Bytes(), fmt.Errorf("%s on guest at %s exited with status %d: %s", shortCmd(cmd), c.addr, code, msg)
	}
	return stdout.Bytes(), nil
}

// Shell starts an interactive login shell on a pty of the given terminal
// type and size, and sends a window-change for every {width, height} that
// arrives on resize (which may be nil). For a local terminal, put it in raw
// mode first. It returns like Run.
func (c *Client) Shell(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, term string, width, height int, resize <-chan [2]int) (int, error) {
	sess, err := c.session(stdin, stdout, stderr)
	if err != nil {
		return -1, err
	}
	defer sess.Close()
	modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}
	if err := sess.RequestPty(term, height, width, modes); err != nil {
		return -1, fmt.Errorf("request pty from guest at %s: %w", c.addr, err)
	}
	if err := sess.Shell(); err != nil {
		return -1, fmt.Errorf("start shell on guest at %s: %w", c.addr, err)
	}
	stopResize := make(chan struct{})
	defer close(stopResize)
	go func() {
		for {
			select {
			case <-stopResize:
				return
			case size, ok := <-resize:
				if !ok {
					return
				}
				sess.WindowChange(size[1], size[0])
			}
		}
	}()
	return c.wait(ctx, sess, "shell")
}

// session opens a session on the connection with the given streams.
func (c *Client) session(stdin io.Reader, stdout, stderr io.Writer) (*ssh.Session, error) {
	sess, err := c.client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open ssh session to guest at %s: %w", c.addr, err)
	}
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, stdout, stderr
	return sess, nil
}

// closeGrace bounds how long Run waits for a cancelled session to wind
// down when the guest does not answer.
const closeGrace = 5 * time.Second

func (c *Client) wait(ctx context.Context, sess *ssh.Session, what string) (int, error) {
	waitc := make(chan error, 1)
	go func() { waitc <- sess.Wait() }()
	select {
	case err := <-waitc:
		return c.exitStatus(what, err)
	case <-ctx.Done():
		sess.Signal(ssh.SIGTERM)
		sess.Close()
		timer := time.NewTimer(closeGrace)
		defer timer.Stop()
		select {
		case <-waitc:
		case <-c.done:
		case <-timer.C:
		}
		return -1, fmt.Errorf("%s on guest at %s: %w", what, c.addr, ctx.Err())
	}
}

func (c *Client) exitStatus(what string, err error) (int, error) {
	var exitErr *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exitErr):
		return exitErr.ExitStatus(), nil
	case errors.As(err, &missing):
		return -1, fmt.Errorf("%s on guest at %s ended without an exit status: the ssh connection was lost or the guest's sshd died", what, c.addr)
	}
	return -1, fmt.Errorf("%s on guest at %s: %w", what, c.addr, err)
}

// SFTP opens an SFTP session on this connection. Close the returned client
// when done; closing the Client also ends it.
func (c *Client) SFTP() (*sftp.Client, error) {
	s, err := sftp.NewClient(c.client)
	if err != nil {
		return nil, fmt.Errorf("start sftp on guest at %s: %w", c.addr, err)
	}
	return s, nil
}

// shortCmd quotes cmd for messages, cut to a readable length.
func shortCmd(cmd string) string {
	const max = 120
	if len(cmd) > max {
		cmd = cmd[:max] + "..."
	}
	return fmt.Sprintf("%q", cmd)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }
