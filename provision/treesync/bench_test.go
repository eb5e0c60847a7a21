package treesync

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkSyncOneChangedOf1000 times a sync of a 1000-file tree (10
// directories, 2 KB files) in which one file changed, against the
// in-process SFTP server over a net.Pipe.
func BenchmarkSyncOneChangedOf1000(b *testing.B) { benchSync1000(b, true) }

// BenchmarkSyncNoChangeOf1000 is the same with nothing changed.
func BenchmarkSyncNoChangeOf1000(b *testing.B) { benchSync1000(b, false) }

func benchSync1000(b *testing.B, change bool) {
	dir := b.TempDir()
	local, remote := filepath.Join(dir, "local"), filepath.Join(dir, "remote")
	tr := tree{}
	for i := range 1000 {
		tr[fmt.Sprintf("d%d/f%03d.c", i%10, i)] = strings.Repeat(fmt.Sprintf("/* %04d */\n", i), 180)
	}
	writeTree(b, local, tr)
	counter := &countConn{}
	c := newClient(b, func(conn net.Conn) net.Conn { counter.Conn = conn; return counter })
	ctx := context.Background()
	if _, err := Sync(ctx, c, local, remote, Options{}); err != nil {
		b.Fatal(err)
	}
	target := filepath.Join(local, "d3/f503.c")
	wantChanged := 0
	if change {
		wantChanged = 1
	}
	var bytes int64
	counter.reset()
	for i := 0; b.Loop(); i++ {
		if change {
			content := fmt.Sprintf("/* version %d */\n%s", i, tr["d3/f503.c"])
			if err := os.WriteFile(target, []byte(content), 0o644); err != nil {
				b.Fatal(err)
			}
			mt := base.Add(time.Duration(i+1) * time.Hour)
			if err := os.Chtimes(target, mt, mt); err != nil {
				b.Fatal(err)
			}
		}
		sum, err := Sync(ctx, c, local, remote, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if sum.Changed != wantChanged || sum.Unchanged != 1000-wantChanged {
			b.Fatalf("sync: %+v, want %d changed", sum, wantChanged)
		}
		bytes += sum.Bytes
	}
	b.ReportMetric(float64(bytes)/float64(b.N), "sent-B/op")
	writes, wire := counter.get()
	b.ReportMetric(float64(writes)/float64(b.N), "client-writes/op")
	b.ReportMetric(float64(wire)/float64(b.N), "client-wire-B/op")
}

// countConn counts what the client writes (an SFTP request is one or two Writes).
type countConn struct {
	net.Conn
	mu            sync.Mutex
	writes, bytes int64
}

func (c *countConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.bytes += int64(len(b))
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *countConn) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes, c.bytes = 0, 0
}

func (c *countConn) get() (writes, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes, c.bytes
}
