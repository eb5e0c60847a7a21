package vm

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// fakeLibvirt is a stateful, in-memory stand-in for a libvirt connection. It keeps domains by
// name, records every call and every XML document defined, and enforces the rules of real
// libvirt the driver must cope with: lookups of missing domains fail with ErrNoDomain, a name
// cannot be redefined with another UUID, starting a running domain and destroying a stopped
// one fail with ErrOperationInvalid. Errors can be injected per method.
type fakeLibvirt struct {
	mu      sync.Mutex
	doms    map[string]*fakeDom
	calls   []string // "Method name" in call order
	defined []string // XML passed to DomainDefineXML, in order

	// errs makes the named method fail with the error (before it changes anything).
	errs map[string]error
	// hooks run at the start of the named method, with the lock held.
	hooks map[string]func(f *fakeLibvirt)
	// stateScript: each DomainGetState on the named domain first applies the next entry.
	stateScript map[string][]fakeState

	version uint64
	caps    string
}

type fakeState struct {
	state  libvirt.DomainState
	reason int32
}

type fakeDom struct {
	uuid      libvirt.UUID
	xml       string
	state     libvirt.DomainState
	reason    int32
	transient bool // undefined while running: gone once stopped
}

func newFakeLibvirt() *fakeLibvirt {
	return &fakeLibvirt{
		doms:        map[string]*fakeDom{},
		errs:        map[string]error{},
		hooks:       map[string]func(*fakeLibvirt){},
		stateScript: map[string][]fakeState{},
		version:     9000000,
	}
}

var _ Libvirt = (*fakeLibvirt)(nil)

func lvErr(code libvirt.ErrorNumber, format string, args ...any) error {
	return libvirt.Error{Code: uint32(code), Message: fmt.Sprintf(format, args...)}
}

// enter records the call, runs its hook and returns its injected error. Lock must be held.
func (f *fakeLibvirt) enter(method, name string) error {
	f.calls = append(f.calls, method+" "+name)
	if h := f.hooks[method]; h != nil {
		h(f)
	}
	return f.errs[method]
}

// get resolves a domain handle; a stale handle (undefined, or redefined under another UUID)
// is not found, as in libvirt.
func (f *fakeLibvirt) get(d libvirt.Domain) (*fakeDom, error) {
	fd, ok := f.doms[d.Name]
	if !ok || fd.uuid != d.UUID {
		return nil, lvErr(libvirt.ErrNoDomain, "Domain not found: no domain with matching uuid '%s' (%s)", formatUUID(d.UUID), d.Name)
	}
	return fd, nil
}

func (f *fakeLibvirt) handle(name string, fd *fakeDom) libvirt.Domain {
	id := int32(-1)
	if fd.state == libvirt.DomainRunning || fd.state == libvirt.DomainPaused {
		id = 1
	}
	return libvirt.Domain{Name: name, UUID: fd.uuid, ID: id}
}

func (f *fakeLibvirt) DomainLookupByName(name string) (libvirt.Domain, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("DomainLookupByName", name); err != nil {
		return libvirt.Domain{}, err
	}
	fd, ok := f.doms[name]
	if !ok {
		return libvirt.Domain{}, lvErr(libvirt.ErrNoDomain, "Domain not found: no domain with matching name '%s'", name)
	}
	return f.handle(name, fd), nil
}

func (f *fakeLibvirt) DomainDefineXML(x string) (libvirt.Domain, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		return libvirt.Domain{}, lvErr(libvirt.ErrXMLError, "XML error: %v", err)
	}
	if err := f.enter("DomainDefineXML", d.Name); err != nil {
		return libvirt.Domain{}, err
	}
	f.defined = append(f.defined, x)
	if d.Name == "" {
		return libvirt.Domain{}, lvErr(libvirt.ErrXMLError, "missing name information")
	}
	var uuid libvirt.UUID
	if d.UUID != "" {
		u, err := parseUUID(d.UUID)
		if err != nil {
			return libvirt.Domain{}, lvErr(libvirt.ErrXMLError, "malformed uuid element")
		}
		uuid = u
		for name, other := range f.doms {
			if other.uuid == uuid && name != d.Name {
				return libvirt.Domain{}, lvErr(libvirt.ErrOperationFailed, "operation failed: domain '%s' already exists with uuid %s", name, d.UUID)
			}
		}
	}
	if fd, ok := f.doms[d.Name]; ok {
		if d.UUID != "" && fd.uuid != uuid {
			return libvirt.Domain{}, lvErr(libvirt.ErrOperationFailed, "operation failed: domain '%s' already exists with uuid %s", d.Name, formatUUID(fd.uuid))
		}
		fd.xml = x
		fd.transient = false
		return f.handle(d.Name, fd), nil
	}
	if d.UUID == "" {
		if _, err := rand.Read(uuid[:]); err != nil {
			return libvirt.Domain{}, err
		}
	}
	fd := &fakeDom{uuid: uuid, xml: x, state: libvirt.DomainShutoff}
	f.doms[d.Name] = fd
	return f.handle(d.Name, fd), nil
}

func (f *fakeLibvirt) DomainCreate(d libvirt.Domain) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("DomainCreate", d.Name); err != nil {
		return err
	}
	fd, err := f.get(d)
	if err != nil {
		return err
	}
	if fd.state != libvirt.DomainShutoff {
		return lvErr(libvirt.ErrOperationInvalid, "Requested operation is not valid: domain is already running")
	}
	fd.state, fd.reason = libvirt.DomainRunning, int32(libvirt.DomainRunningBooted)
	return nil
}

func (f *fakeLibvirt) DomainGetState(d libvirt.Domain, flags uint32) (int32, int32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("DomainGetState", d.Name); err != nil {
		return 0, 0, err
	}
	fd, err := f.get(d)
	if err != nil {
		return 0, 0, err
	}
	if script := f.stateScript[d.Name]; len(script) > 0 {
		fd.state, fd.reason = script[0].state, script[0].reason
		f.stateScript[d.Name] = script[1:]
	}
	return int32(fd.state), fd.reason, nil
}

func (f *fakeLibvirt) DomainDestroy(d libvirt.Domain) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("DomainDestroy", d.Name); err != nil {
		return err
	}
	fd, err := f.get(d)
	if err != nil {
		return err
	}
	if fd.state == libvirt.DomainShutoff {
		return lvErr(libvirt.ErrOperationInvalid, "Requested operation is not valid: domain is not running")
	}
	fd.state, fd.reason = libvirt.DomainShutoff, int32(libvirt.DomainShutoffDestroyed)
	if fd.transient {
		delete(f.doms, d.Name)
	}
	return nil
}

func (f *fakeLibvirt) DomainUndefineFlags(d libvirt.Domain, flags libvirt.DomainUndefineFlagsValues) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("DomainUndefineFlags", d.Name); err != nil {
		return err
	}
	fd, err := f.get(d)
	if err != nil {
		return err
	}
	if fd.transient {
		return lvErr(libvirt.ErrOperationInvalid, "Requested operation is not valid: cannot undefine transient domain")
	}
	if fd.state != libvirt.DomainShutoff {
		fd.transient = true // libvirt keeps it running, unpersisted
		return nil
	}
	delete(f.doms, d.Name)
	return nil
}

func (f *fakeLibvirt) DomainGetXMLDesc(d libvirt.Domain, flags libvirt.DomainXMLFlags) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("DomainGetXMLDesc", d.Name); err != nil {
		return "", err
	}
	fd, err := f.get(d)
	if err != nil {
		return "", err
	}
	return fd.xml, nil
}

func (f *fakeLibvirt) ConnectGetCapabilities() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("ConnectGetCapabilities", ""); err != nil {
		return "", err
	}
	return f.caps, nil
}

func (f *fakeLibvirt) ConnectGetLibVersion() (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("ConnectGetLibVersion", ""); err != nil {
		return 0, err
	}
	return f.version, nil
}

func (f *fakeLibvirt) Disconnect() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.enter("Disconnect", "")
}

// callsTo returns the recorded calls of the named methods, in order.
func (f *fakeLibvirt) callsTo(methods ...string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		for _, m := range methods {
			if len(c) > len(m) && c[:len(m)+1] == m+" " {
				out = append(out, c)
			}
		}
	}
	return out
}

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
