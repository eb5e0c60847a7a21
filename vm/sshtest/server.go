// Package sshtest provides an in-process SSH server for tests: it
// authenticates one client key, runs "exec" requests as real local
// processes with /bin/sh -c, serves the "sftp" subsystem, supports
// pty-req/shell/window-change and signals, and has knobs to misbehave the
// way a booting or crashed guest does (late banner, dropped or frozen
// connections).
package sshtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// NewKey returns a fresh ed25519 signer, for host or client keys in tests.
func NewKey(t testing.TB) ssh.Signer {
	t.Helper()
	s, _ := newKey(t)
	return s
}

// NewKeyFiles writes a fresh ed25519 key as OpenSSH does: the private key to path (mode
// 0600) and its authorized_keys line to path+".pub". It returns the key's signer.
func NewKeyFiles(t testing.TB, path string) ssh.Signer {
	t.Helper()
	s, priv := newKey(t)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatalf("encode ed25519 private key: %v", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(s.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

func newKey(t testing.TB) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generate ed25519 key: %v", err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatalf("signer from ed25519 key: %v", err)
	}
	return s, priv
}

// Exit describes how one exec'd or shell process ended.
type Exit struct {
	Command string // "" for a shell
	Status  int    // exit status, or -1 if killed by a signal
	Signal  string // SSH signal name ("TERM") if killed by a signal
}

// Server is an in-process SSH server listening on 127.0.0.1:0.
type Server struct {
	t          testing.TB
	ln         net.Listener
	config     *ssh.ServerConfig
	authorized ssh.PublicKey
	dir        string
	env        []string
	forward    bool
	closed     chan struct{}
	closeOnce  sync.Once
	wg         sync.WaitGroup

	mu           sync.Mutex
	changed      chan struct{} // closed and replaced on every state change
	conns        map[net.Conn]struct{}
	hold         chan struct{} // non-nil: new connections get no banner until closed
	frozen       chan struct{} // non-nil: reads from all connections stall until closed
	accepted     int
	logins       int
	authFailures int
	running      map[*session]struct{}
	execs        []string
	exits        []Exit
	window       [2]int // last pty size, width and height
}

// Option configures a Server.
type Option func(*Server)

// WithDir sets the working directory of processes and the base of relative
// SFTP paths (default: a fresh t.TempDir()).
func WithDir(dir string) Option { return func(s *Server) { s.dir = dir } }

// WithEnv adds env ("KEY=value") to the environment of processes, after the test's own
// (so it overrides it): e.g. a PATH of fake commands, so a script run as if in a guest
// reaches no real insmod.
func WithEnv(env ...string) Option { return func(s *Server) { s.env = append(s.env, env...) } }

// WithForwarding lets clients open connections from the server's side, as OpenSSH's
// AllowTcpForwarding and AllowStreamLocalForwarding do: direct-tcpip to a host:port and
// direct-streamlocal@openssh.com to a unix socket, dialed from this process.
func WithForwarding() Option { return func(s *Server) { s.forward = true } }

// NewServer starts a server with the given host key that accepts only the
// authorized client key. Processes run, and relative SFTP paths resolve, in a fresh
// t.TempDir() (see Dir) unless WithDir says otherwise. t.Cleanup closes it.
func NewServer(t testing.TB, hostKey ssh.Signer, authorized ssh.PublicKey, opts ...Option) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sshtest: listen: %v", err)
	}
	s := &Server{
		t:          t,
		ln:         ln,
		authorized: authorized,
		closed:     make(chan struct{}),
		changed:    make(chan struct{}),
		conns:      make(map[net.Conn]struct{}),
		running:    make(map[*session]struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	if s.dir == "" {
		s.dir = t.TempDir()
	}
	s.config = &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(authorized.Marshal()) {
				return nil, nil
			}
			return nil, fmt.Errorf("sshtest: key %s not authorized", ssh.FingerprintSHA256(key))
		},
		AuthLogCallback: func(_ ssh.ConnMetadata, method string, err error) {
			// Called before the server answers the client, so the
			// counts are current once the client's handshake returns.
			switch {
			case err == nil:
				s.update(func() { s.logins++ })
			case method != "none":
				s.update(func() { s.authFailures++ })
			}
		},
	}
	s.config.AddHostKey(hostKey)
	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(s.Close)
	return s
}

// Addr returns "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Dir returns the working directory of processes.
func (s *Server) Dir() string { return s.dir }

// Close stops the listener, drops all connections, kills the processes
// still running and waits for the server's goroutines.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.ln.Close()
		s.mu.Lock()
		if s.hold != nil {
			close(s.hold)
			s.hold = nil
		}
		if s.frozen != nil {
			close(s.frozen)
			s.frozen = nil
		}
		for se := range s.running {
			se.signal(syscall.SIGKILL)
		}
		s.mu.Unlock()
		s.DropConnections()
		s.wg.Wait()
	})
}

// DropConnections closes every open TCP connection, as a crashed guest or
// a killed QEMU would. The listener stays up.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// HoldBanner makes connections accepted from now on wait without sending
// the SSH banner until release is called, like QEMU's slirp accepting TCP
// before the guest's sshd listens.
func (s *Server) HoldBanner() (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold == nil {
		s.hold = make(chan struct{})
	}
	hold := s.hold
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.hold == hold {
			close(hold)
			s.hold = nil
		}
	}
}

// Freeze makes the server stop processing input on all connections (as a
// hung guest would) until thaw is called. Connections stay open.
func (s *Server) Freeze() (thaw func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frozen == nil {
		s.frozen = make(chan struct{})
	}
	frozen := s.frozen
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.frozen == frozen {
			close(frozen)
			s.frozen = nil
		}
	}
}

// Accepted returns the number of TCP connections accepted so far.
func (s *Server) Accepted() int { return s.get(func() int { return s.accepted }) }

// Logins returns the number of successful logins.
func (s *Server) Logins() int { return s.get(func() int { return s.logins }) }

// AuthFailures returns the number of rejected authentication attempts
// (the "none" method probe not counted).
func (s *Server) AuthFailures() int { return s.get(func() int { return s.authFailures }) }

// Execs returns the commands of all exec requests received so far.
func (s *Server) Execs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.execs...)
}

// Exits returns how the finished processes ended, in order.
func (s *Server) Exits() []Exit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Exit(nil), s.exits...)
}

// WaitAccepted blocks until at least n TCP connections have been accepted.
func (s *Server) WaitAccepted(ctx context.Context, n int) error {
	return s.waitFor(ctx, func() bool { return s.accepted >= n })
}

// WaitIdle blocks until no process started by the server is running.
func (s *Server) WaitIdle(ctx context.Context) error {
	return s.waitFor(ctx, func() bool { return len(s.running) == 0 })
}

// WaitNoConnections blocks until every connection a client made has ended.
func (s *Server) WaitNoConnections(ctx context.Context) error {
	return s.waitFor(ctx, func() bool { return len(s.conns) == 0 })
}

// WaitWindowSize blocks until a pty has been set to width x height.
func (s *Server) WaitWindowSize(ctx context.Context, width, height int) error {
	return s.waitFor(ctx, func() bool { return s.window == [2]int{width, height} })
}

func (s *Server) get(f func() int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return f()
}

// update runs f under the lock and wakes every waitFor.
func (s *Server) update(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) waitFor(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ok, changed := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closed:
			return errors.New("sshtest: server closed")
		case <-changed:
		}
	}
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		conn := &gatedConn{Conn: c, s: s}
		var hold chan struct{}
		s.update(func() {
			s.accepted++
			s.conns[conn] = struct{}{}
			hold = s.hold
		})
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				conn.Close()
				s.update(func() { delete(s.conns, conn) })
			}()
			if hold != nil {
				select {
				case <-hold:
				case <-s.closed:
					return
				}
			}
			s.serveConn(conn)
		}()
	}
}

// gatedConn stalls reads while the server is frozen. The check comes after
// the underlying read so that a read already waiting when Freeze is called
// holds back what it receives.
type gatedConn struct {
	net.Conn
	s *Server
}

func (c *gatedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.s.mu.Lock()
	frozen := c.s.frozen
	c.s.mu.Unlock()
	if frozen != nil {
		select {
		case <-frozen:
		case <-c.s.closed:
		}
	}
	return n, err
}

func (s *Server) serveConn(conn net.Conn) {
	sconn, chans, reqs, err := ssh.NewServerConn(conn, s.config)
	if err != nil {
		return
	}
	defer sconn.Close()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if s.forward && (nc.ChannelType() == "direct-tcpip" || nc.ChannelType() == "direct-streamlocal@openssh.com") {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serveForward(nc)
			}()
			continue
		}
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveSession(ch, chReqs)
		}()
	}
}

// serveForward dials what a direct-tcpip or direct-streamlocal channel names and copies
// both ways until either side ends. A target that cannot be dialed rejects the channel with
// the dial error, as OpenSSH does ("connect failed").
func (s *Server) serveForward(nc ssh.NewChannel) {
	var network, addr string
	if nc.ChannelType() == "direct-tcpip" {
		var m struct {
			Host     string
			Port     uint32
			OrigHost string
			OrigPort uint32
		}
		if err := ssh.Unmarshal(nc.ExtraData(), &m); err != nil {
			nc.Reject(ssh.ConnectionFailed, "bad direct-tcpip payload: "+err.Error())
			return
		}
		network, addr = "tcp", net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port)))
	} else {
		var m struct {
			Path      string
			Reserved0 string
			Reserved1 uint32
		}
		if err := ssh.Unmarshal(nc.ExtraData(), &m); err != nil {
			nc.Reject(ssh.ConnectionFailed, "bad direct-streamlocal payload: "+err.Error())
			return
		}
		network, addr = "unix", m.Path
	}
	conn, err := net.Dial(network, addr)
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	defer conn.Close()
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	go ssh.DiscardRequests(reqs)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(conn, ch); done <- struct{}{} }()
	go func() { _, _ = io.Copy(ch, conn); done <- struct{}{} }()
	select {
	case <-done:
	case <-s.closed:
	}
}

// session is the state of one session channel.
type session struct {
	s    *Server
	ch   ssh.Channel
	env  []string
	pty  *pty
	proc *exec.Cmd
	done chan struct{} // closed when proc has exited and its output is sent
	// afterReply runs once the request that set it has been answered: a command that
	// exits at once must not close the channel before the client has its reply to
	// "exec" (the client would see EOF instead of the exit status).
	afterReply func()
}

func (s *Server) serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	se := &session{s: s, ch: ch}
	defer func() {
		if se.proc != nil {
			// The client closed the channel or the connection died. Like
			// sshd, hang up a process on a pty; one without a pty only
			// sees its pipes close (Close kills what is left).
			if se.pty != nil {
				se.signal(syscall.SIGHUP)
			}
			<-se.done
		}
		if se.pty != nil {
			se.pty.Close()
		}
		ch.Close()
	}()
	for req := range reqs {
		ok := se.handle(req)
		if req.WantReply {
			req.Reply(ok, nil)
		}
		if f := se.afterReply; f != nil {
			se.afterReply = nil
			f()
		}
	}
}

func (se *session) handle(req *ssh.Request) bool {
	switch req.Type {
	case "env":
		var kv struct{ Name, Value string }
		if ssh.Unmarshal(req.Payload, &kv) != nil {
			return false
		}
		se.env = append(se.env, kv.Name+"="+kv.Value)
		return true
	case "pty-req":
		var p struct {
			Term              string
			Columns, Rows     uint32
			WidthPx, HeightPx uint32
			Modes             string
		}
		if ssh.Unmarshal(req.Payload, &p) != nil || se.pty != nil {
			return false
		}
		pt, err := openPTY()
		if err != nil {
			se.s.t.Logf("sshtest: open pty: %v", err)
			return false
		}
		se.pty = pt
		se.env = append(se.env, "TERM="+p.Term)
		se.resize(int(p.Columns), int(p.Rows))
		return true
	case "window-change":
		var p struct{ Columns, Rows, WidthPx, HeightPx uint32 }
		if ssh.Unmarshal(req.Payload, &p) != nil || se.pty == nil {
			return false
		}
		se.resize(int(p.Columns), int(p.Rows))
		return true
	case "exec":
		var p struct{ Command string }
		if ssh.Unmarshal(req.Payload, &p) != nil || se.proc != nil {
			return false
		}
		se.s.update(func() { se.s.execs = append(se.s.execs, p.Command) })
		return se.start(p.Command, exec.Command("/bin/sh", "-c", p.Command))
	case "shell":
		if se.proc != nil {
			return false
		}
		return se.start("", exec.Command("/bin/sh"))
	case "subsystem":
		var p struct{ Name string }
		if ssh.Unmarshal(req.Payload, &p) != nil || p.Name != "sftp" || se.proc != nil {
			return false
		}
		srv, err := sftp.NewServer(se.ch, sftp.WithServerWorkingDirectory(se.s.dir))
		if err != nil {
			return false
		}
		se.afterReply = func() {
			go se.serveSFTP(srv)
		}
		return true
	case "signal":
		var p struct{ Signal string }
		if ssh.Unmarshal(req.Payload, &p) != nil || se.proc == nil {
			return false
		}
		sig, ok := signalsByName[p.Signal]
		if !ok {
			return false
		}
		se.signal(sig)
		return true
	}
	return false
}

// serveSFTP serves the sftp subsystem on the session's channel until the client ends it.
func (se *session) serveSFTP(srv *sftp.Server) {
	err := srv.Serve()
	status := 0
	if err != nil && !errors.Is(err, io.EOF) {
		status = 1
	}
	se.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
	se.ch.Close()
}

func (se *session) resize(width, height int) {
	if err := se.pty.SetSize(width, height); err != nil {
		se.s.t.Logf("sshtest: set pty size: %v", err)
		return
	}
	se.s.update(func() { se.s.window = [2]int{width, height} })
}

// start runs cmd and, once it exits and its output is copied, sends the
// exit status and closes the channel.
func (se *session) start(command string, cmd *exec.Cmd) bool {
	cmd.Dir = se.s.dir
	cmd.Env = append(append(os.Environ(), se.s.env...), se.env...)
	var copies sync.WaitGroup
	if se.pty != nil {
		tty := se.pty.tty
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	} else {
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return false
		}
		// Not waited for: a client that never closes stdin must not
		// keep the session alive after the process exits.
		go func() {
			io.Copy(stdin, se.ch)
			stdin.Close()
		}()
		cmd.Stdout, cmd.Stderr = se.ch, se.ch.Stderr()
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.WaitDelay = 5 * time.Second
	}
	if err := cmd.Start(); err != nil {
		se.s.t.Logf("sshtest: start %q: %v", command, err)
		return false
	}
	if se.pty != nil {
		se.pty.tty.Close() // the child holds it now; reads of ptm end with EIO when it exits
		se.pty.tty = nil
		copies.Add(1)
		go func() {
			defer copies.Done()
			io.Copy(se.ch, se.pty.ptm)
		}()
		go io.Copy(se.pty.ptm, se.ch)
	}
	se.proc = cmd
	se.done = make(chan struct{})
	se.s.update(func() { se.s.running[se] = struct{}{} })
	select {
	case <-se.s.closed: // Close may have missed it
		se.signal(syscall.SIGKILL)
	default:
	}
	se.afterReply = func() { go se.reap(command, cmd, &copies) }
	return true
}

// reap waits for the session's process, reports how it ended and closes the channel.
func (se *session) reap(command string, cmd *exec.Cmd, copies *sync.WaitGroup) {
	defer close(se.done)
	err := cmd.Wait()
	copies.Wait()
	ex := Exit{Command: command, Status: cmd.ProcessState.ExitCode()}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		ex.Signal = signalNames[ws.Signal()]
	}
	if err != nil && ex.Status == -1 && ex.Signal == "" {
		se.s.t.Logf("sshtest: wait %q: %v", command, err)
	}
	if ex.Signal != "" {
		se.ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}{Signal: ex.Signal}))
	} else {
		se.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(ex.Status)}))
	}
	se.ch.Close()
	se.s.update(func() {
		delete(se.s.running, se)
		se.s.exits = append(se.s.exits, ex)
	})
}

// signal sends sig to the process group (or session) of the process.
func (se *session) signal(sig syscall.Signal) {
	select {
	case <-se.done:
		return
	default:
	}
	syscall.Kill(-se.proc.Process.Pid, sig)
}

var signalsByName = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "KILL": syscall.SIGKILL,
	"TERM": syscall.SIGTERM, "QUIT": syscall.SIGQUIT, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
}

var signalNames = func() map[syscall.Signal]string {
	m := make(map[syscall.Signal]string)
	for name, sig := range signalsByName {
		m[sig] = name
	}
	m[syscall.SIGPIPE] = "PIPE"
	m[syscall.SIGABRT] = "ABRT"
	m[syscall.SIGSEGV] = "SEGV"
	return m
}()
