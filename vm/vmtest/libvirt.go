// Package vmtest provides a stateful, in-memory stand-in for a libvirt connection, for tests
// of code built on vm.Driver. *Libvirt satisfies vm.Libvirt; this package does not import vm,
// so vm's own (internal) tests can use it too.
package vmtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// AnyMethod, given to FailOn, makes every call fail, as a lost connection would.
const AnyMethod = "*"

// Libvirt keeps domains by name, records every call and every XML document defined, and
// enforces the rules of real libvirt a driver must cope with: lookups of missing domains fail
// with ErrNoDomain, a name cannot be redefined with another UUID, starting a running domain
// and destroying a stopped one fail with ErrOperationInvalid, undefining a running domain
// leaves it running as a transient domain that disappears once stopped.
//
// Errors can be injected per method (FailOn), hooks run at the start of a method (OnCall),
// and the guest can stop by itself (StopByItself) as it does when it panics.
type Libvirt struct {
	mu      sync.Mutex
	doms    map[string]*dom
	calls   []string // "Method name" in call order
	defined []string // XML passed to DomainDefineXML, in order

	errs        map[string]error
	hooks       map[string]func(name string)
	stateScript map[string][]StateStep
	onRestored  func(name, xml string)
	onSaved     func(name string)
	restored    []string // replacement XML of every restore that started a domain

	version, qemuVersion uint64
	nodeCPUs, nodeMemMiB int
	pools                map[string]*pool
	consoles             map[string]string
}

// StateStep is one state DomainGetState reports (see ScriptStates).
type StateStep struct {
	State  libvirt.DomainState
	Reason int32
}

// Domain is a snapshot of one domain the fake holds.
type Domain struct {
	Name      string
	UUID      string // canonical lower-case text form
	XML       string // last XML defined for it
	State     libvirt.DomainState
	Reason    int32
	Transient bool // undefined while running: gone once stopped
}

type dom struct {
	uuid      libvirt.UUID
	xml       string
	state     libvirt.DomainState
	reason    int32
	transient bool
}

// NewLibvirt returns an empty fake: no domains, libvirt version 9.0.0, empty capabilities.
func NewLibvirt() *Libvirt {
	return &Libvirt{
		doms:        map[string]*dom{},
		errs:        map[string]error{},
		hooks:       map[string]func(string){},
		stateScript: map[string][]StateStep{},
		pools:       map[string]*pool{},
		consoles:    map[string]string{},
		version:     9000000,
		qemuVersion: 7002000,
		nodeCPUs:    2,
		nodeMemMiB:  8192,
	}
}

// Error builds a libvirt error with the given code, as the daemon returns it
// (libvirt.IsNotFound and code checks work on it).
func Error(code libvirt.ErrorNumber, format string, args ...any) error {
	return libvirt.Error{Code: uint32(code), Message: fmt.Sprintf(format, args...)}
}

// FailOn makes every later call of method (e.g. "DomainCreate", or AnyMethod) fail with err
// before it changes anything; the call is still recorded. A nil err clears the failure.
func (f *Libvirt) FailOn(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.errs, method)
		return
	}
	f.errs[method] = err
}

// OnCall runs hook at the start of every later call of method, after the call is recorded
// and before its injected error or its effect. hook gets the domain name ("" for connection
// methods) and runs without the fake's lock, so it may call the fake's methods (SetState,
// StopByItself, Remove, Domain...). A nil hook removes it.
func (f *Libvirt) OnCall(method string, hook func(name string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if hook == nil {
		delete(f.hooks, method)
		return
	}
	f.hooks[method] = hook
}

// ScriptStates makes the next DomainGetState calls on domain name first switch the domain to
// the given states, one per call; afterwards it keeps the last one.
func (f *Libvirt) ScriptStates(name string, steps ...StateStep) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stateScript[name] = append(f.stateScript[name], steps...)
}

// SetLibVersion sets what ConnectGetLibVersion returns (major*1000000 + minor*1000 + micro).
func (f *Libvirt) SetLibVersion(v uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.version = v
}

// SetQEMUVersion sets what ConnectGetVersion returns (QEMU's version, encoded as libvirt's).
func (f *Libvirt) SetQEMUVersion(v uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.qemuVersion = v
}

// OnRestored runs hook after every restore that started a domain, with its name and the XML
// it runs with (outside the fake's lock): the fake's stand-in for the QEMU a restore starts.
func (f *Libvirt) OnRestored(hook func(name, xml string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onRestored = hook
}

// OnSaved runs hook after every save that stopped a domain, with its name (outside the
// fake's lock): the QEMU that ran it exits.
func (f *Libvirt) OnSaved(hook func(name string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onSaved = hook
}

// Restored returns the XML of every restore that started a domain, in order.
func (f *Libvirt) Restored() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.restored)
}

// AddDomain defines a domain name directly (no call recorded), in state st: one that exists
// before the code under test runs, e.g. a user's own domain. Its XML is minimal.
func (f *Libvirt) AddDomain(name string, st libvirt.DomainState) error {
	var uuid libvirt.UUID
	if _, err := rand.Read(uuid[:]); err != nil {
		return err
	}
	x := fmt.Sprintf("<domain type=\"qemu\"><name>%s</name><uuid>%s</uuid></domain>", name, formatUUID(uuid))
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.doms[name]; ok {
		return fmt.Errorf("vmtest: domain %q already exists", name)
	}
	f.doms[name] = &dom{uuid: uuid, xml: x, state: st, reason: bootReason(st)}
	return nil
}

func bootReason(st libvirt.DomainState) int32 {
	if st == libvirt.DomainRunning {
		return int32(libvirt.DomainRunningBooted)
	}
	return 0
}

// SetState forces domain name into st/reason, as if it changed outside the code under test.
func (f *Libvirt) SetState(name string, st libvirt.DomainState, reason int32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.doms[name]
	if !ok {
		return fmt.Errorf("vmtest: no domain %q", name)
	}
	d.state, d.reason = st, reason
	return nil
}

// StopByItself makes the running domain name stop on its own, as it does when the guest
// powers off or panics (panic=-1 reboots, on_reboot=destroy stops it): state shutoff, reason
// "shutdown"; a transient domain disappears. It is an error if the domain is not running.
func (f *Libvirt) StopByItself(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.doms[name]
	if !ok {
		return fmt.Errorf("vmtest: no domain %q", name)
	}
	if d.state == libvirt.DomainShutoff {
		return fmt.Errorf("vmtest: domain %q is not running", name)
	}
	d.state, d.reason = libvirt.DomainShutoff, int32(libvirt.DomainShutoffShutdown)
	if d.transient {
		delete(f.doms, name)
	}
	return nil
}

// Remove deletes domain name at once, as an undefine behind the code's back (e.g. virsh).
func (f *Libvirt) Remove(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.doms, name)
}

// Domain returns a snapshot of domain name.
func (f *Libvirt) Domain(name string) (Domain, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.doms[name]
	if !ok {
		return Domain{}, false
	}
	return Domain{Name: name, UUID: formatUUID(d.uuid), XML: d.xml, State: d.state, Reason: d.reason, Transient: d.transient}, true
}

// Domains returns the names of all domains, sorted.
func (f *Libvirt) Domains() []string {
	return f.names(func(*dom) bool { return true })
}

// Running returns the names of the running (or paused) domains, sorted.
func (f *Libvirt) Running() []string {
	return f.names(func(d *dom) bool { return d.state != libvirt.DomainShutoff })
}

func (f *Libvirt) names(keep func(*dom) bool) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n, d := range f.doms {
		if keep(d) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// Defined returns every XML document passed to DomainDefineXML, in order (including ones
// libvirt rejected after parsing).
func (f *Libvirt) Defined() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.defined)
}

// Calls returns the recorded calls ("Method name", e.g. "DomainCreate kmodvm-dev";
// "Method " for connection methods) of the named methods, in order; all calls when no method
// is named.
func (f *Libvirt) Calls(methods ...string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if len(methods) == 0 {
			out = append(out, c)
			continue
		}
		for _, m := range methods {
			if strings.HasPrefix(c, m+" ") {
				out = append(out, c)
			}
		}
	}
	return out
}

// ResetCalls forgets the calls recorded so far (e.g. those of a test's setup).
func (f *Libvirt) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

// enter records the call and runs its hook, then takes the lock and returns the injected
// error. The caller must unlock f.mu.
func (f *Libvirt) enter(method, name string) error {
	f.mu.Lock()
	f.calls = append(f.calls, method+" "+name)
	hook := f.hooks[method]
	f.mu.Unlock()
	if hook != nil {
		hook(name)
	}
	f.mu.Lock()
	if err := f.errs[AnyMethod]; err != nil {
		return err
	}
	return f.errs[method]
}

// enterDomain is enter for a call on domain d, resolved with get. Like enter, it returns
// with f.mu held.
func (f *Libvirt) enterDomain(method string, d libvirt.Domain) (*dom, error) {
	if err := f.enter(method, d.Name); err != nil {
		return nil, err
	}
	return f.get(d)
}

// get resolves a domain handle; a stale handle (undefined, or redefined under another UUID)
// is not found, as in libvirt.
func (f *Libvirt) get(d libvirt.Domain) (*dom, error) {
	fd, ok := f.doms[d.Name]
	if !ok || fd.uuid != d.UUID {
		return nil, Error(libvirt.ErrNoDomain, "Domain not found: no domain with matching uuid '%s' (%s)", formatUUID(d.UUID), d.Name)
	}
	return fd, nil
}

func handle(name string, fd *dom) libvirt.Domain {
	id := int32(-1)
	if fd.state == libvirt.DomainRunning || fd.state == libvirt.DomainPaused {
		id = 1
	}
	return libvirt.Domain{Name: name, UUID: fd.uuid, ID: id}
}

// The methods below implement vm.Libvirt.

// DomainLookupByName finds a domain by name.
func (f *Libvirt) DomainLookupByName(name string) (libvirt.Domain, error) {
	err := f.enter("DomainLookupByName", name)
	defer f.mu.Unlock()
	if err != nil {
		return libvirt.Domain{}, err
	}
	fd, ok := f.doms[name]
	if !ok {
		return libvirt.Domain{}, Error(libvirt.ErrNoDomain, "Domain not found: no domain with matching name '%s'", name)
	}
	return handle(name, fd), nil
}

func (f *Libvirt) DomainDefineXML(x string) (libvirt.Domain, error) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		return libvirt.Domain{}, Error(libvirt.ErrXMLError, "XML error: %v", err)
	}
	err := f.enter("DomainDefineXML", d.Name)
	defer f.mu.Unlock()
	if err != nil {
		return libvirt.Domain{}, err
	}
	f.defined = append(f.defined, x)
	if d.Name == "" {
		return libvirt.Domain{}, Error(libvirt.ErrXMLError, "missing name information")
	}
	var uuid libvirt.UUID
	if d.UUID != "" {
		u, err := parseUUID(d.UUID)
		if err != nil {
			return libvirt.Domain{}, Error(libvirt.ErrXMLError, "malformed uuid element")
		}
		uuid = u
		for name, other := range f.doms {
			if other.uuid == uuid && name != d.Name {
				return libvirt.Domain{}, Error(libvirt.ErrOperationFailed, "operation failed: domain '%s' already exists with uuid %s", name, d.UUID)
			}
		}
	}
	if fd, ok := f.doms[d.Name]; ok {
		if d.UUID != "" && fd.uuid != uuid {
			return libvirt.Domain{}, Error(libvirt.ErrOperationFailed, "operation failed: domain '%s' already exists with uuid %s", d.Name, formatUUID(fd.uuid))
		}
		fd.xml = x
		fd.transient = false
		return handle(d.Name, fd), nil
	}
	if d.UUID == "" {
		if _, err := rand.Read(uuid[:]); err != nil {
			return libvirt.Domain{}, err
		}
	}
	fd := &dom{uuid: uuid, xml: x, state: libvirt.DomainShutoff}
	f.doms[d.Name] = fd
	return handle(d.Name, fd), nil
}

func (f *Libvirt) DomainCreate(d libvirt.Domain) error {
	fd, err := f.enterDomain("DomainCreate", d)
	defer f.mu.Unlock()
	if err != nil {
		return err
	}
	if fd.state != libvirt.DomainShutoff {
		return Error(libvirt.ErrOperationInvalid, "Requested operation is not valid: domain is already running")
	}
	fd.state, fd.reason = libvirt.DomainRunning, int32(libvirt.DomainRunningBooted)
	return nil
}

func (f *Libvirt) DomainGetState(d libvirt.Domain, flags uint32) (int32, int32, error) {
	fd, err := f.enterDomain("DomainGetState", d)
	defer f.mu.Unlock()
	if err != nil {
		return 0, 0, err
	}
	if script := f.stateScript[d.Name]; len(script) > 0 {
		fd.state, fd.reason = script[0].State, script[0].Reason
		f.stateScript[d.Name] = script[1:]
	}
	return int32(fd.state), fd.reason, nil
}

func (f *Libvirt) DomainDestroy(d libvirt.Domain) error {
	fd, err := f.enterDomain("DomainDestroy", d)
	defer f.mu.Unlock()
	if err != nil {
		return err
	}
	if fd.state == libvirt.DomainShutoff {
		return Error(libvirt.ErrOperationInvalid, "Requested operation is not valid: domain is not running")
	}
	fd.state, fd.reason = libvirt.DomainShutoff, int32(libvirt.DomainShutoffDestroyed)
	if fd.transient {
		delete(f.doms, d.Name)
	}
	return nil
}

// DomainInjectNMI is counted in Calls; a running domain is left running (what the guest
// does with an NMI is up to its kernel: a test that wants the panic sets a hook).
func (f *Libvirt) DomainInjectNmi(d libvirt.Domain, flags uint32) error {
	fd, err := f.enterDomain("DomainInjectNMI", d)
	defer f.mu.Unlock()
	if err != nil {
		return err
	}
	if fd.state != libvirt.DomainRunning && fd.state != libvirt.DomainPaused {
		return Error(libvirt.ErrOperationInvalid, "Requested operation is not valid: domain is not running")
	}
	return nil
}

func (f *Libvirt) DomainUndefineFlags(d libvirt.Domain, flags libvirt.DomainUndefineFlagsValues) error {
	fd, err := f.enterDomain("DomainUndefineFlags", d)
	defer f.mu.Unlock()
	if err != nil {
		return err
	}
	if fd.transient {
		return Error(libvirt.ErrOperationInvalid, "Requested operation is not valid: cannot undefine transient domain")
	}
	if fd.state != libvirt.DomainShutoff {
		fd.transient = true // libvirt keeps it running, unpersisted
		return nil
	}
	delete(f.doms, d.Name)
	return nil
}

func (f *Libvirt) DomainGetXMLDesc(d libvirt.Domain, flags libvirt.DomainXMLFlags) (string, error) {
	fd, err := f.enterDomain("DomainGetXMLDesc", d)
	defer f.mu.Unlock()
	if err != nil {
		return "", err
	}
	return fd.xml, nil
}

func (f *Libvirt) ConnectGetVersion() (uint64, error) {
	err := f.enter("ConnectGetVersion", "")
	defer f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return f.qemuVersion, nil
}

// SetNode sets the CPUs and memory NodeGetInfo reports (2 CPUs, 8 GiB unless set).
func (f *Libvirt) SetNode(cpus, memoryMiB int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodeCPUs, f.nodeMemMiB = cpus, memoryMiB
}

func (f *Libvirt) NodeGetInfo() (model [32]int8, memKiB uint64, cpus, mhz, nodes, sockets, cores, threads int32, err error) {
	err = f.enter("NodeGetInfo", "")
	defer f.mu.Unlock()
	if err != nil {
		return model, 0, 0, 0, 0, 0, 0, 0, err
	}
	return model, uint64(f.nodeMemMiB) * 1024, int32(f.nodeCPUs), 2000, 1, 1, int32(f.nodeCPUs), 1, nil
}

func (f *Libvirt) ConnectGetLibVersion() (uint64, error) {
	err := f.enter("ConnectGetLibVersion", "")
	defer f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return f.version, nil
}

func (f *Libvirt) Disconnect() error {
	err := f.enter("Disconnect", "")
	f.mu.Unlock()
	return err
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// parseUUID parses the canonical text form of a UUID.
func parseUUID(s string) (libvirt.UUID, error) {
	var u libvirt.UUID
	if !uuidRE.MatchString(s) {
		return u, fmt.Errorf("bad uuid %q", s)
	}
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil {
		return u, err
	}
	copy(u[:], b)
	return u, nil
}

// formatUUID renders a libvirt UUID in its canonical text form.
func formatUUID(u libvirt.UUID) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
