package sshclient

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/vm/sshtest"
	"golang.org/x/crypto/ssh"
)

// testTimeout bounds waits for events that must happen; it is a guard
// against hangs, never what a test asserts.
const testTimeout = 20 * time.Second

// sshFixture is an in-process SSH server and a config that reaches it.
type sshFixture struct {
	srv     *sshtest.Server
	cfg     Config
	hostKey ssh.Signer
}

func newSSHFixture(t *testing.T) sshFixture {
	t.Helper()
	host, user := sshtest.NewKey(t), sshtest.NewKey(t)
	srv := sshtest.NewServer(t, host, user.PublicKey())
	return sshFixture{
		srv:     srv,
		hostKey: host,
		cfg: Config{
			Addr:          srv.Addr(),
			User:          "root",
			Signer:        user,
			HostKey:       host.PublicKey(),
			BannerTimeout: 100 * time.Millisecond,
			RetryInterval: 10 * time.Millisecond,
		},
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// dial connects to the fixture's server; t.Cleanup closes the client.
func (f sshFixture) dial(t *testing.T) *Client {
	t.Helper()
	c, err := Dial(testContext(t), f.cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// watchBuffer is a concurrency-safe buffer whose contents can be awaited.
type watchBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newWatchBuffer() *watchBuffer { return &watchBuffer{changed: make(chan struct{})} }

func (w *watchBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	close(w.changed)
	w.changed = make(chan struct{})
	return len(p), nil
}

func (w *watchBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// waitFor blocks until the buffer contains s.
func (w *watchBuffer) waitFor(ctx context.Context, t *testing.T, s string) {
	t.Helper()
	for {
		w.mu.Lock()
		ok, changed := strings.Contains(w.buf.String(), s), w.changed
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("output never contained %q; got %q", s, w.String())
		case <-changed:
		}
	}
}
