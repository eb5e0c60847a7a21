package vm

import (
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/kmodvm/kmodvm/vm/vmtest"
)

// daemon is a fake libvirtd that can be killed and restarted: its domains (the fake's state)
// survive, as QEMU guests survive a libvirtd restart; its connections do not.
type daemon struct {
	*vmtest.Libvirt
	mu    sync.Mutex
	up    bool
	dials int
	conn  *fakeSession
}

// fakeSession is one connection to the daemon: it answers like go-libvirt's does once the
// socket is gone (EINVAL, and Disconnected closed).
type fakeSession struct {
	*vmtest.Libvirt
	gone chan struct{}
}

func (s *fakeSession) Disconnected() <-chan struct{} { return s.gone }

func (s *fakeSession) lost() bool {
	select {
	case <-s.gone:
		return true
	default:
		return false
	}
}

func (s *fakeSession) DomainCreate(d libvirt.Domain) error {
	if s.lost() {
		return syscall.EINVAL
	}
	err := s.Libvirt.DomainCreate(d)
	if s.lost() { // the daemon died while answering: the start happened, the answer is lost
		return syscall.EINVAL
	}
	return err
}

func (s *fakeSession) DomainLookupByName(name string) (libvirt.Domain, error) {
	if s.lost() {
		return libvirt.Domain{}, syscall.EINVAL
	}
	return s.Libvirt.DomainLookupByName(name)
}

func (s *fakeSession) DomainGetState(d libvirt.Domain, flags uint32) (int32, int32, error) {
	if s.lost() {
		return 0, 0, syscall.EINVAL
	}
	return s.Libvirt.DomainGetState(d, flags)
}

func (d *daemon) dial(context.Context) (session, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dials++
	if !d.up {
		return nil, errors.New("connect to libvirt qemu:///system: libvirtd is not running")
	}
	d.conn = &fakeSession{Libvirt: d.Libvirt, gone: make(chan struct{})}
	return d.conn, nil
}

// kill stops the daemon: its connection is lost.
func (d *daemon) kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.up = false
	if d.conn != nil && !d.conn.lost() {
		close(d.conn.gone)
	}
}

func (d *daemon) start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.up = true
}

func newDaemonConn(t *testing.T, ctx context.Context) (*daemon, *Conn) {
	t.Helper()
	d := &daemon{Libvirt: vmtest.NewLibvirt(), up: true}
	first, err := d.dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return d, newConn(ctx, "qemu:///system", nil, first, d.dial)
}

func TestConnReconnects(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		fault func(d *daemon)           // before the call
		call  func(drv *Driver) error   // the call under test
		check func(*testing.T, *daemon) // afterwards
	}{
		{
			name:  "restarted between calls",
			fault: func(d *daemon) { d.kill(); d.start() },
			call: func(drv *Driver) error {
				st, err := drv.State(ctx, "vm1")
				if err == nil && st != StateRunning {
					return errors.New("state " + string(st))
				}
				return err
			},
		},
		{
			name: "restarted while a start was being answered",
			fault: func(d *daemon) {
				d.OnCall("DomainCreate", func(string) {
					d.OnCall("DomainCreate", nil) // once
					d.kill()
					d.start()
				})
			},
			call: func(drv *Driver) error { return drv.Start(ctx, "vm2") },
			check: func(t *testing.T, d *daemon) {
				if got := d.Running(); len(got) != 2 {
					t.Errorf("running domains after the retried start: %v, want vm1 and vm2", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, c := newDaemonConn(t, ctx)
			if err := d.AddDomain("vm1", libvirt.DomainRunning); err != nil {
				t.Fatal(err)
			}
			if err := d.AddDomain("vm2", libvirt.DomainShutoff); err != nil {
				t.Fatal(err)
			}
			tt.fault(d)
			if err := tt.call(NewDriver(c, nil)); err != nil {
				t.Fatalf("call after libvirtd restarted: %v", err)
			}
			if d.dials != 2 {
				t.Errorf("dialed %d times, want 2 (the first connection and one reconnect)", d.dials)
			}
			if tt.check != nil {
				tt.check(t, d)
			}
		})
	}
}

func TestConnGivesUpWhenLibvirtdStaysDown(t *testing.T) {
	d, c := newDaemonConn(t, context.Background())
	c.wait = 300 * time.Millisecond
	d.kill()
	_, err := NewDriver(c, nil).State(context.Background(), "vm1")
	if err == nil || !strings.Contains(err.Error(), "could not reconnect within") || !strings.Contains(err.Error(), "libvirtd is not running") {
		t.Fatalf("err = %v, want a give-up error naming the cause", err)
	}
	if d.dials < 2 {
		t.Errorf("dialed %d times: it did not try to reconnect", d.dials)
	}
}

func TestConnStopsRedialingWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	d, c := newDaemonConn(t, ctx)
	d.kill()
	cancel()
	_, err := c.ConnectGetLibVersion()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestConnDoesNotRetryLibvirtErrors(t *testing.T) {
	d, c := newDaemonConn(t, context.Background())
	d.FailOn("DomainCreate", vmtest.Error(libvirt.ErrInternalError, "internal error: qemu unexpectedly closed the monitor"))
	if err := d.AddDomain("vm1", libvirt.DomainShutoff); err != nil {
		t.Fatal(err)
	}
	err := NewDriver(c, nil).Start(context.Background(), "vm1")
	if err == nil || !strings.Contains(err.Error(), "qemu unexpectedly closed") {
		t.Fatalf("err = %v", err)
	}
	if n := len(d.Calls("DomainCreate")); n != 1 || d.dials != 1 {
		t.Errorf("libvirtd's own error was retried: %d creates, %d dials", n, d.dials)
	}
}
