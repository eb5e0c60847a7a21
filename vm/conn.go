package vm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/digitalocean/go-libvirt"
)

// ReconnectWait is how long a Conn keeps redialing a libvirtd that went away (a restart
// takes 1-3 s here) before it gives up with an error.
const ReconnectWait = 30 * time.Second

// session is one connection to libvirtd: *libvirt.Libvirt, or a fake in tests.
type session interface {
	Libvirt
	PoolLibvirt
	ProbeLibvirt
	Disconnected() <-chan struct{}
}

// Conn is a libvirt connection that survives a libvirtd restart. libvirtd going away
// (restart, upgrade, crash) does not touch the running guests, so kmodvm should not fail
// either: a call that finds the connection lost, or loses it on the way, redials for up to
// ReconnectWait and is made once more on the new connection. Every call kmodvm makes is safe
// to repeat (lookups, state, define with the same XML, destroy/undefine of a domain; a start
// that already happened is recognised by Driver.Start). When libvirtd does not come back the
// call fails with an error saying so, never hangs.
//
// go-libvirt calls take no context: the context given to Connect bounds the redials.
type Conn struct {
	ctx  context.Context
	uri  string
	dial func(ctx context.Context) (session, error)
	log  *slog.Logger
	wait time.Duration

	mu  sync.Mutex
	cur session
}

var _ Libvirt = (*Conn)(nil)

func newConn(ctx context.Context, uri string, log *slog.Logger, first session, dial func(context.Context) (session, error)) *Conn {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Conn{ctx: ctx, uri: uri, dial: dial, log: log, wait: ReconnectWait, cur: first}
}

func isDisconnected(s session) bool {
	select {
	case <-s.Disconnected():
		return true
	default:
		return false
	}
}

// session returns the current connection, redialing when it was lost.
func (c *Conn) session() (session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil && !isDisconnected(c.cur) {
		return c.cur, nil
	}
	c.log.Warn("lost the connection to libvirtd; reconnecting", "uri", c.uri)
	ctx, cancel := context.WithTimeout(c.ctx, c.wait)
	defer cancel()
	for {
		s, err := c.dial(ctx)
		if err == nil {
			c.cur = s
			c.log.Info("reconnected to libvirtd", "uri", c.uri)
			return s, nil
		}
		select {
		case <-ctx.Done():
			if c.ctx.Err() != nil {
				return nil, fmt.Errorf("reconnect to libvirt %s: %w", c.uri, c.ctx.Err())
			}
			return nil, fmt.Errorf("lost the connection to libvirt %s (libvirtd stopped or restarted) and could not reconnect within %s; the guests keep running: %w", c.uri, c.wait, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// lostDuring tells whether err came from the connection dropping under the call rather than
// from libvirtd answering: libvirtd's own answers are *libvirt.Error.
func lostDuring(s session, err error) bool {
	if err == nil {
		return false
	}
	var lerr libvirt.Error
	if errors.As(err, &lerr) {
		return false
	}
	select { // the socket's reader notices the drop right after the call does
	case <-s.Disconnected():
		return true
	case <-time.After(200 * time.Millisecond):
		return false
	}
}

// call runs op on the connection, once more on a new one when the connection was lost.
func call[T any](c *Conn, op func(session) (T, error)) (T, error) {
	s, err := c.session()
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := op(s)
	if !lostDuring(s, err) {
		return v, err
	}
	if s, err = c.session(); err != nil {
		var zero T
		return zero, err
	}
	return op(s)
}

func call0(c *Conn, op func(session) error) error {
	_, err := call(c, func(s session) (struct{}, error) { return struct{}{}, op(s) })
	return err
}

func (c *Conn) DomainLookupByName(name string) (libvirt.Domain, error) {
	return call(c, func(s session) (libvirt.Domain, error) { return s.DomainLookupByName(name) })
}

func (c *Conn) DomainDefineXML(xml string) (libvirt.Domain, error) {
	return call(c, func(s session) (libvirt.Domain, error) { return s.DomainDefineXML(xml) })
}

func (c *Conn) DomainCreate(d libvirt.Domain) error {
	return call0(c, func(s session) error { return s.DomainCreate(d) })
}

func (c *Conn) DomainGetState(d libvirt.Domain, flags uint32) (int32, int32, error) {
	type stateReason struct{ state, reason int32 }
	v, err := call(c, func(s session) (stateReason, error) {
		st, r, err := s.DomainGetState(d, flags)
		return stateReason{st, r}, err
	})
	return v.state, v.reason, err
}

func (c *Conn) DomainDestroy(d libvirt.Domain) error {
	return call0(c, func(s session) error { return s.DomainDestroy(d) })
}

func (c *Conn) DomainUndefineFlags(d libvirt.Domain, flags libvirt.DomainUndefineFlagsValues) error {
	return call0(c, func(s session) error { return s.DomainUndefineFlags(d, flags) })
}

func (c *Conn) DomainGetXMLDesc(d libvirt.Domain, flags libvirt.DomainXMLFlags) (string, error) {
	return call(c, func(s session) (string, error) { return s.DomainGetXMLDesc(d, flags) })
}

func (c *Conn) DomainInjectNmi(d libvirt.Domain, flags uint32) error {
	return call0(c, func(s session) error { return s.DomainInjectNmi(d, flags) })
}

// DomainSaveFlags is not repeated on a new connection: a save that got as far as stopping
// the domain cannot be made again, and the caller falls back to what it does when a save
// fails.
func (c *Conn) DomainSaveFlags(d libvirt.Domain, to string, dxml libvirt.OptString, flags uint32) error {
	return once(c, func(s session) error { return s.DomainSaveFlags(d, to, dxml, flags) })
}

// DomainRestoreFlags is not repeated on a new connection either: a restore that started the
// domain would fail the second time with the domain already running.
func (c *Conn) DomainRestoreFlags(from string, dxml libvirt.OptString, flags uint32) error {
	return once(c, func(s session) error { return s.DomainRestoreFlags(from, dxml, flags) })
}

func (c *Conn) DomainSaveImageGetXMLDesc(file string, flags uint32) (string, error) {
	return call(c, func(s session) (string, error) { return s.DomainSaveImageGetXMLDesc(file, flags) })
}

func (c *Conn) ConnectGetVersion() (uint64, error) {
	return call(c, func(s session) (uint64, error) { return s.ConnectGetVersion() })
}

// once runs op on the connection (redialed first when it was lost), but never a second time.
func once(c *Conn, op func(session) error) error {
	s, err := c.session()
	if err != nil {
		return err
	}
	return op(s)
}

func (c *Conn) ConnectGetLibVersion() (uint64, error) {
	return call(c, func(s session) (uint64, error) { return s.ConnectGetLibVersion() })
}

// nodeInfo is NodeGetInfo's answer in one value, for call.
type nodeInfo struct {
	model                                 [32]int8
	memory                                uint64
	cpus, mhz, nodes, sockets, cores, thr int32
}

func (c *Conn) NodeGetInfo() ([32]int8, uint64, int32, int32, int32, int32, int32, int32, error) {
	n, err := call(c, func(s session) (nodeInfo, error) {
		var n nodeInfo
		var err error
		n.model, n.memory, n.cpus, n.mhz, n.nodes, n.sockets, n.cores, n.thr, err = s.NodeGetInfo()
		return n, err
	})
	return n.model, n.memory, n.cpus, n.mhz, n.nodes, n.sockets, n.cores, n.thr, err
}

// Disconnect closes the current connection (a lost one needs no closing).
func (c *Conn) Disconnect() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil || isDisconnected(c.cur) {
		return nil
	}
	return c.cur.Disconnect()
}
