package vmtest

import (
	"io"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// Transient domains and their serial consoles: DomainCreateXML starts a domain that is gone
// once it stops; DomainOpenConsole streams what SetConsole gave for it, then blocks until the
// domain stops, as libvirt's console stream does.

// SetConsole sets what the console of domain name prints when opened.
func (f *Libvirt) SetConsole(name, output string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.consoles[name] = output
}

// SetConsoleAll sets what the console of any domain without its own SetConsole prints (for
// domains whose names the code under test makes up).
func (f *Libvirt) SetConsoleAll(output string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.consoles[""] = output
}

// DomainCreateXML starts a transient domain running.
func (f *Libvirt) DomainCreateXML(doc string, _ libvirt.DomainCreateFlags) (libvirt.Domain, error) {
	var d libvirtxml.Domain
	xerr := d.Unmarshal(doc)
	err := f.enter("DomainCreateXML", d.Name)
	defer f.mu.Unlock()
	if err != nil {
		return libvirt.Domain{}, err
	}
	if xerr != nil || d.Name == "" {
		return libvirt.Domain{}, Error(libvirt.ErrXMLError, "XML error: %v", xerr)
	}
	if _, ok := f.doms[d.Name]; ok {
		return libvirt.Domain{}, Error(libvirt.ErrOperationFailed, "operation failed: domain '%s' already exists", d.Name)
	}
	fd := &dom{uuid: newUUID(), xml: doc, state: libvirt.DomainRunning, reason: int32(libvirt.DomainRunningBooted), transient: true}
	f.doms[d.Name] = fd
	f.defined = append(f.defined, doc)
	return handle(d.Name, fd), nil
}

// DomainOpenConsole writes the domain's console output to w and returns once the domain no
// longer runs (or is paused: a paused guest prints nothing more, but its stream stays open
// until it is destroyed).
func (f *Libvirt) DomainOpenConsole(d libvirt.Domain, _ libvirt.OptString, w io.Writer, _ uint32) error {
	_, err := f.enterDomain("DomainOpenConsole", d)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	out, ok := f.consoles[d.Name]
	if !ok {
		out = f.consoles[""]
	}
	f.mu.Unlock()
	if _, err := io.WriteString(w, out); err != nil {
		return err
	}
	for {
		f.mu.Lock()
		fd, ok := f.doms[d.Name]
		gone := !ok || fd.uuid != d.UUID || fd.state == libvirt.DomainShutoff || fd.state == libvirt.DomainCrashed
		f.mu.Unlock()
		if gone {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
}
