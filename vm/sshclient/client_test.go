package sshclient

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/vm/remedy"
	"github.com/kmodvm/kmodvm/vm/sshtest"
	"golang.org/x/crypto/ssh"
)

func TestRun(t *testing.T) {
	f := newSSHFixture(t)
	c := f.dial(t)
	tests := []struct {
		name       string
		cmd        string
		stdin      string
		wantStdout string
		wantStderr string
		wantCode   int
	}{
		{name: "success", cmd: "echo hello", wantStdout: "hello\n"},
		{name: "stdout stderr and status", cmd: "echo out; echo err >&2; exit 3", wantStdout: "out\n", wantStderr: "err\n", wantCode: 3},
		{name: "stdin", cmd: "tr a-z A-Z", stdin: "some input\nlines\n", wantStdout: "SOME INPUT\nLINES\n"},
		{name: "no stdin reads EOF", cmd: "cat; echo end", wantStdout: "end\n"},
		{name: "killed by signal", cmd: "kill -TERM $$", wantCode: 128 + 15},
		{name: "working dir", cmd: "pwd", wantStdout: f.srv.Dir() + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdin io.Reader
			if tt.stdin != "" {
				stdin = strings.NewReader(tt.stdin)
			}
			var stdout, stderr bytes.Buffer
			code, err := c.Run(testContext(t), tt.cmd, stdin, &stdout, &stderr)
			if err != nil {
				t.Fatalf("Run(%q): %v", tt.cmd, err)
			}
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d", code, tt.wantCode)
			}
			if stdout.String() != tt.wantStdout {
				t.Errorf("stdout = %q, want %q", stdout.String(), tt.wantStdout)
			}
			if stderr.String() != tt.wantStderr {
				t.Errorf("stderr = %q, want %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

// kmodvm exec passes os.Stdin, which may never reach EOF: Run must still
// return when the command exits.
func TestRunStdinNeverClosed(t *testing.T) {
	c := newSSHFixture(t).dial(t)
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	var stdout bytes.Buffer
	code, err := c.Run(testContext(t), "echo done; exit 4", stdinR, &stdout, nil)
	if err != nil || code != 4 || stdout.String() != "done\n" {
		t.Errorf("Run = %d, %v, stdout %q; want 4, nil, \"done\\n\"", code, err, stdout.String())
	}
}

func TestOutput(t *testing.T) {
	c := newSSHFixture(t).dial(t)
	ctx := testContext(t)
	out, err := c.Output(ctx, "echo fine")
	if err != nil || string(out) != "fine\n" {
		t.Errorf(`Output("echo fine") = %q, %v; want "fine\n", nil`, out, err)
	}
	_, err = c.Output(ctx, "echo partial; echo 'insmod: ERROR: could not insert module' >&2; exit 1")
	if err == nil {
		t.Fatal("Output of a failing command returned no error")
	}
	for _, want := range []string{"exited with status 1", "could not insert module"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

// TestWrongHostKeyRefused: a guest offering any key but the pinned one gets no login and no
// command, the refusal is not retried, and the error explains it with a hint that names the
// VM when it is known.
func TestWrongHostKeyRefused(t *testing.T) {
	f := newSSHFixture(t)
	impostor := sshtest.NewKey(t)
	dials := []struct {
		name string
		dial func(context.Context, Config) (*Client, error)
	}{
		{"Dial", Dial},
		{"Wait", func(ctx context.Context, cfg Config) (*Client, error) { return Wait(ctx, cfg, nil) }},
	}
	for _, vmName := range []string{"", "dev"} {
		for _, tt := range dials {
			t.Run(tt.name+"/vm="+vmName, func(t *testing.T) {
				cfg := f.cfg
				cfg.HostKey = impostor.PublicKey()
				cfg.HostKeyFile = "/var/lib/kmodvm/host_ed25519.pub"
				cfg.VM = vmName
				before := f.srv.Accepted()
				c, err := tt.dial(testContext(t), cfg)
				if err == nil {
					c.Close()
					t.Fatal("connected despite a host key mismatch")
				}
				var mismatch *HostKeyMismatchError
				if !errors.As(err, &mismatch) {
					t.Fatalf("error is %T (%v), want *HostKeyMismatchError", err, err)
				}
				for _, want := range []string{
					"host key of guest at " + f.srv.Addr() + " does not match the pinned key",
					ssh.FingerprintSHA256(impostor.PublicKey()),
					ssh.FingerprintSHA256(f.hostKey.PublicKey()),
					cfg.HostKeyFile,
					"nothing was sent to it",
				} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
				if re := remedy.Find(err); re == nil || re.VM != vmName || !slices.Equal(re.Do, []remedy.Action{remedy.RecreateVM}) {
					t.Errorf("remedy = %+v, want RecreateVM for VM %q", re, vmName)
				}
				if n := f.srv.Accepted() - before; n != 1 {
					t.Errorf("%d connections made, want 1 (a mismatch must not be retried)", n)
				}
			})
		}
	}
	if n := f.srv.Logins(); n != 0 {
		t.Errorf("server saw %d logins, want 0", n)
	}
	if execs := f.srv.Execs(); len(execs) != 0 {
		t.Errorf("commands ran despite the mismatch: %q", execs)
	}
}

func TestWrongClientKeyNotRetried(t *testing.T) {
	f := newSSHFixture(t)
	f.cfg.Signer = sshtest.NewKey(t)
	f.cfg.KeyFile = "/root/.kmodvm/id_ed25519"
	f.cfg.VM = "dev"
	c, err := Wait(testContext(t), f.cfg, nil)
	if err == nil {
		c.Close()
		t.Fatal("logged in with an unauthorized key")
	}
	var authErr *AuthError
	if !errors.As(err, &authErr) {
		t.Fatalf("error is %T (%v), want *AuthError", err, err)
	}
	if !strings.Contains(err.Error(), f.cfg.KeyFile) {
		t.Errorf("error %q does not name the key file", err)
	}
	if re := remedy.Find(err); re == nil || re.VM != "dev" || !slices.Equal(re.Do, []remedy.Action{remedy.RecreateVM}) || re.Note == "" {
		t.Errorf("remedy = %+v, want a note and RecreateVM for VM dev", re)
	}
	if n := f.srv.Accepted(); n != 1 {
		t.Errorf("%d connections made, want 1", n)
	}
	if n := f.srv.AuthFailures(); n != 1 {
		t.Errorf("%d failed logins, want 1", n)
	}
}

func TestLoadSSHConfig(t *testing.T) {
	dir := t.TempDir()
	userKey, hostKeyFile := filepath.Join(dir, "id_ed25519"), filepath.Join(dir, "host_ed25519")
	user := sshtest.NewKeyFiles(t, userKey)
	hostSigner := sshtest.NewKeyFiles(t, hostKeyFile)
	hostPub := hostKeyFile + ".pub"

	// A server using the host key and authorizing the user key accepts the loaded config.
	srv := sshtest.NewServer(t, hostSigner, user.PublicKey())
	cfg, err := LoadConfig(srv.Addr(), "root", userKey, hostPub)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	c, err := Dial(testContext(t), cfg)
	if err != nil {
		t.Fatalf("Dial with loaded config: %v", err)
	}
	c.Close()

	t.Run("group-readable key refused", func(t *testing.T) {
		if err := os.Chmod(userKey, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(userKey, 0o600)
		_, err := LoadConfig(srv.Addr(), "root", userKey, hostPub)
		if err == nil {
			t.Fatal("LoadConfig accepted a key file with mode 0644")
		}
		for _, want := range []string{"0644", "hint: chmod 600 " + userKey} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
		}
	})
	t.Run("bad host key file", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.pub")
		if err := os.WriteFile(bad, []byte("not a key\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(srv.Addr(), "root", userKey, bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("LoadConfig with a bad host key file: err = %v, want one naming %s", err, bad)
		}
	})
}

func TestDialSSHNeedsPinnedHostKey(t *testing.T) {
	f := newSSHFixture(t)
	f.cfg.HostKey = nil
	if _, err := Dial(testContext(t), f.cfg); err == nil || !strings.Contains(err.Error(), "pinned host key") {
		t.Errorf("Dial without a host key: err = %v, want a refusal", err)
	}
	if n := f.srv.Accepted(); n != 0 {
		t.Errorf("%d connections made, want 0", n)
	}
}

func TestWaitSSHBannerLate(t *testing.T) {
	f := newSSHFixture(t)
	release := f.srv.HoldBanner()
	ctx := testContext(t)
	type result struct {
		c   *Client
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := Wait(ctx, f.cfg, nil)
		done <- result{c, err}
	}()
	// Two connections mean the first probe gave up on the banner and
	// Wait tried again.
	if err := f.srv.WaitAccepted(ctx, 2); err != nil {
		t.Fatalf("waiting for Wait to retry: %v", err)
	}
	release()
	r := <-done
	if r.err != nil {
		t.Fatalf("Wait: %v", r.err)
	}
	defer r.c.Close()
	if n := f.srv.Logins(); n != 1 {
		t.Errorf("%d logins, want 1", n)
	}
	if n := f.srv.AuthFailures(); n != 0 {
		t.Errorf("%d failed logins, want 0", n)
	}
	if out, err := r.c.Output(ctx, "echo up"); err != nil || string(out) != "up\n" {
		t.Errorf("Output after Wait = %q, %v", out, err)
	}
}

// closedAddr returns an address on which nothing listens.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestWaitSSHAliveAborts(t *testing.T) {
	f := newSSHFixture(t)
	f.cfg.Addr = closedAddr(t)
	errDead := errors.New("domain kmodvm-test is no longer running")
	calls := 0
	alive := func() error {
		calls++
		if calls == 3 {
			return errDead
		}
		return nil
	}
	_, err := Wait(testContext(t), f.cfg, alive)
	if !errors.Is(err, errDead) {
		t.Fatalf("Wait error = %v, want one wrapping %v", err, errDead)
	}
	if calls != 3 {
		t.Errorf("alive called %d times, want 3", calls)
	}
}

func TestWaitSSHContextCancel(t *testing.T) {
	f := newSSHFixture(t)
	f.srv.HoldBanner()
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan error, 1)
	go func() {
		_, err := Wait(ctx, f.cfg, nil)
		done <- err
	}()
	if err := f.srv.WaitAccepted(testContext(t), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Wait error = %v, want context.Canceled", err)
	}
}

func TestRunCancelKillsRemoteCommand(t *testing.T) {
	f := newSSHFixture(t)
	c := f.dial(t)
	ctx, cancel := context.WithCancel(testContext(t))
	stdout := newWatchBuffer()
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(ctx, "echo started; sleep 1000", nil, stdout, nil)
		done <- err
	}()
	stdout.waitFor(testContext(t), t, "started")
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run error = %v, want context.Canceled", err)
	}
	if err := f.srv.WaitIdle(testContext(t)); err != nil {
		t.Fatalf("remote command still running: %v", err)
	}
	exits := f.srv.Exits()
	if len(exits) != 1 || exits[0].Signal != "TERM" {
		t.Errorf("remote exits = %+v, want one killed by TERM", exits)
	}
	// The connection survives a cancelled command.
	if out, err := c.Output(testContext(t), "echo still here"); err != nil || string(out) != "still here\n" {
		t.Errorf("Output after cancel = %q, %v", out, err)
	}
}

func waitDone(t *testing.T, c *Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-testContext(t).Done():
		t.Fatal("Done() never closed")
	}
}

func TestDoneWhenConnectionDropped(t *testing.T) {
	f := newSSHFixture(t)
	c := f.dial(t)
	if c.Err() != nil {
		t.Errorf("Err() = %v on a live connection", c.Err())
	}
	if c.Lost(10 * time.Millisecond) {
		t.Error("Lost() on a live connection")
	}
	// A command running when the guest goes away fails with an error,
	// not an exit status.
	stdout := newWatchBuffer()
	runErr := make(chan error, 1)
	go func() {
		_, err := c.Run(testContext(t), "echo started; sleep 1000", nil, stdout, nil)
		runErr <- err
	}()
	stdout.waitFor(testContext(t), t, "started")
	f.srv.DropConnections()
	if !c.Lost(time.Minute) {
		t.Error("Lost() = false after the connection dropped")
	}
	waitDone(t, c)
	if c.Err() == nil {
		t.Error("Err() = nil after the connection dropped")
	}
	if err := <-runErr; err == nil {
		t.Error("Run returned no error when the connection dropped")
	}
	if _, err := c.Run(testContext(t), "true", nil, nil, nil); err == nil {
		t.Error("Run on a dead connection returned no error")
	}
}

func TestKeepAliveDetectsHungGuest(t *testing.T) {
	f := newSSHFixture(t)
	f.cfg.KeepAlive = 20 * time.Millisecond
	c := f.dial(t)
	thaw := f.srv.Freeze()
	defer thaw()
	waitDone(t, c)
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "stopped answering ssh keepalives") {
		t.Errorf("Err() = %v, want the keepalive failure", err)
	}
}

func TestCloseClosesDone(t *testing.T) {
	c := newSSHFixture(t).dial(t)
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	waitDone(t, c)
}

func TestSFTPRoundTrip(t *testing.T) {
	f := newSSHFixture(t)
	c := f.dial(t)
	sc, err := c.SFTP()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	data := bytes.Repeat([]byte("kmodvm sftp \x00\xff\n"), 10000) // several packets
	path := filepath.Join(f.srv.Dir(), "mod", "hello.rs")
	if err := sc.MkdirAll(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	w, err := sc.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(onDisk, data) {
		t.Fatalf("file on the server side: %d bytes, err %v; want the %d bytes written", len(onDisk), err, len(data))
	}
	r, err := sc.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	back, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(back, data) {
		t.Errorf("read back %d bytes, err %v; want the %d bytes written", len(back), err, len(data))
	}
}

func TestShell(t *testing.T) {
	f := newSSHFixture(t)
	c := f.dial(t)
	ctx := testContext(t)
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	out := newWatchBuffer()
	resize := make(chan [2]int)
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := c.Shell(ctx, stdinR, out, out, "xterm", 80, 24, resize)
		done <- result{code, err}
	}()
	io.WriteString(stdinW, "stty size; tty\n")
	out.waitFor(ctx, t, "24 80")
	out.waitFor(ctx, t, "/dev/pts/")
	resize <- [2]int{100, 40}
	if err := f.srv.WaitWindowSize(ctx, 100, 40); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdinW, "stty size; exit 7\n")
	r := <-done
	if r.err != nil {
		t.Fatalf("Shell: %v", r.err)
	}
	if r.code != 7 {
		t.Errorf("Shell exit code = %d, want 7", r.code)
	}
	if !strings.Contains(out.String(), "40 100") {
		t.Errorf("shell output %q lacks the resized \"40 100\"", out.String())
	}
}

// noDeadlineConn is a connection like one carried by an SSH channel: deadlines are refused.
type noDeadlineConn struct{ net.Conn }

func (noDeadlineConn) SetDeadline(time.Time) error      { return errors.New("deadline not supported") }
func (noDeadlineConn) SetReadDeadline(time.Time) error  { return errors.New("deadline not supported") }
func (noDeadlineConn) SetWriteDeadline(time.Time) error { return errors.New("deadline not supported") }

// Config.Dial carries the connection (a remote host's loopback through its SSH connection);
// the banner and handshake limits still hold on a connection without deadlines.
func TestDialThroughDialer(t *testing.T) {
	f := newSSHFixture(t)
	var dialed []string
	f.cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialed = append(dialed, network+" "+addr)
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return noDeadlineConn{c}, nil
	}
	c := f.dial(t)
	if out, err := c.Output(testContext(t), "echo up"); err != nil || string(out) != "up\n" {
		t.Errorf("Output through the dialer = %q, %v", out, err)
	}
	if len(dialed) != 1 || dialed[0] != "tcp "+f.srv.Addr() {
		t.Errorf("dialed %v, want one tcp connection to %s", dialed, f.srv.Addr())
	}

	release := f.srv.HoldBanner()
	defer release()
	if _, err := Dial(testContext(t), f.cfg); err == nil || !strings.Contains(err.Error(), "no ssh banner") {
		t.Errorf("Dial with the banner held: %v, want the banner timeout", err)
	}
	release()
	thaw := f.srv.Freeze()
	defer thaw()
	f.cfg.HandshakeTimeout = 200 * time.Millisecond
	if _, err := Dial(testContext(t), f.cfg); err == nil || !strings.Contains(err.Error(), "no answer within 200ms") {
		t.Errorf("Dial with the server frozen: %v, want the handshake timeout", err)
	}
}
