package vmtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// Daemon is a fake libvirtd on a unix socket of its own. It speaks just enough of libvirt's
// RPC protocol to let a client connect: it answers auth-list (no authentication) and
// connect-open, records the URI each connection opens, and hangs up on any other call. Tests
// use it to see which daemon, and which URI, a client really reached.
type Daemon struct {
	Socket string // the socket path: give it as "qemu:///system?socket=" + Socket

	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	opened []string
}

// libvirt RPC: every packet is a big-endian length (counting itself), a header, a payload.
const (
	remoteProgram   = 0x20008086
	procConnectOpen = 1
	procAuthList    = 66
	typeReply       = 1
	headerLen       = 24 // program, version, procedure, type, serial, status
	maxPacket       = 1 << 20
)

// NewDaemon starts a daemon; t.Cleanup stops it.
func NewDaemon(t testing.TB) *Daemon {
	t.Helper()
	// A short directory: a unix socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "lvd")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Socket: filepath.Join(dir, "sock")}
	d.ln, err = net.Listen("unix", d.Socket)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("fake libvirtd: %v", err)
	}
	d.wg.Add(1)
	go d.accept()
	t.Cleanup(func() {
		d.ln.Close()
		d.wg.Wait()
		os.RemoveAll(dir)
	})
	return d
}

// Opened returns the URIs that clients opened, in order.
func (d *Daemon) Opened() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.opened)
}

func (d *Daemon) accept() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer c.Close()
			_ = d.serve(c)
		}()
	}
}

// serve answers requests until the client sends one the daemon does not know.
func (d *Daemon) serve(c net.Conn) error {
	for {
		var n uint32
		if err := binary.Read(c, binary.BigEndian, &n); err != nil {
			return err
		}
		if n < 4+headerLen || n > maxPacket {
			return fmt.Errorf("bad packet length %d", n)
		}
		pkt := make([]byte, n-4)
		if _, err := io.ReadFull(c, pkt); err != nil {
			return err
		}
		hdr, payload := pkt[:headerLen], pkt[headerLen:]
		if binary.BigEndian.Uint32(hdr[0:]) != remoteProgram {
			return errors.New("not the remote program")
		}
		var reply []byte
		switch binary.BigEndian.Uint32(hdr[8:]) {
		case procAuthList:
			reply = []byte{0, 0, 0, 0} // an empty list: no authentication
		case procConnectOpen:
			uri, err := openedURI(payload)
			if err != nil {
				return err
			}
			d.mu.Lock()
			d.opened = append(d.opened, uri)
			d.mu.Unlock()
		default:
			return nil
		}
		out := binary.BigEndian.AppendUint32(nil, uint32(4+headerLen+len(reply)))
		out = append(out, hdr[:12]...) // program, version, procedure
		out = binary.BigEndian.AppendUint32(out, typeReply)
		out = append(out, hdr[16:20]...) // serial
		out = binary.BigEndian.AppendUint32(out, 0)
		if _, err := c.Write(append(out, reply...)); err != nil {
			return err
		}
	}
}

// openedURI decodes connect-open's arguments: an optional string (a presence word, then
// length and bytes), then flags.
func openedURI(p []byte) (string, error) {
	if len(p) < 8 || binary.BigEndian.Uint32(p) == 0 {
		return "", errors.New("connect-open without a URI")
	}
	n := binary.BigEndian.Uint32(p[4:])
	if uint32(len(p)-8) < n {
		return "", errors.New("connect-open: URI cut short")
	}
	return string(p[8 : 8+n]), nil
}
