package vmtest

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// The fake's save files: SaveMagic, the domain XML, then SaveEnd. libvirt's real ones start
// with "LibvirtQemudSave" and a header holding the XML, then QEMU's migration stream; what
// matters to a test is that a file which is not one, or was cut short, fails the restore the
// way libvirt's does.
const (
	SaveMagic = "vmtest-save\n"
	SaveEnd   = "\nvmtest-save-end\n"
)

// SaveFile returns the contents of a fake save file holding domain XML x.
func SaveFile(x string) []byte { return []byte(SaveMagic + x + SaveEnd) }

// DomainSaveFlags writes the running domain's XML to the file to, as a save file, and stops
// the domain (shutoff, reason "saved"); a transient domain disappears. dxml must be empty.
func (f *Libvirt) DomainSaveFlags(d libvirt.Domain, to string, dxml libvirt.OptString, flags uint32) error {
	err := f.save(d, to, dxml)
	hook := f.onSaved
	f.mu.Unlock()
	if err == nil && hook != nil {
		hook(d.Name)
	}
	return err
}

// save is DomainSaveFlags; it returns with f.mu held.
func (f *Libvirt) save(d libvirt.Domain, to string, dxml libvirt.OptString) error {
	fd, err := f.enterDomain("DomainSaveFlags", d)
	if err != nil {
		return err
	}
	if len(dxml) > 0 {
		return Error(libvirt.ErrArgumentUnsupported, "vmtest: DomainSaveFlags with a replacement XML is not supported")
	}
	if fd.state != libvirt.DomainRunning && fd.state != libvirt.DomainPaused {
		return Error(libvirt.ErrOperationInvalid, "Requested operation is not valid: domain is not running")
	}
	if err := os.WriteFile(to, SaveFile(fd.xml), 0o600); err != nil {
		return Error(libvirt.ErrSystemError, "Failed to create file '%s': %v", to, err)
	}
	fd.state, fd.reason = libvirt.DomainShutoff, int32(libvirt.DomainShutoffSaved)
	if fd.transient {
		delete(f.doms, d.Name)
	}
	return nil
}

// readSave reads the XML of the save file path with libvirt's errors for a missing file, a
// file that is no save image, and (whole: the migration stream too) one that was cut short.
func readSave(path string, whole bool) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", Error(libvirt.ErrSystemError, "Failed to open domain image file '%s': %v", path, err)
	}
	rest, ok := bytes.CutPrefix(b, []byte(SaveMagic))
	if !ok {
		if len(b) < len(SaveMagic) {
			return "", Error(libvirt.ErrOperationFailed, "operation failed: failed to read qemu header")
		}
		return "", Error(libvirt.ErrOperationFailed, "operation failed: image magic is incorrect")
	}
	x, ok := bytes.CutSuffix(rest, []byte(SaveEnd))
	if !ok {
		if !whole {
			// The header holds the XML; what is missing is QEMU's part.
			if i := bytes.Index(rest, []byte("</domain>")); i >= 0 {
				return string(rest[:i+len("</domain>")]), nil
			}
		}
		return "", Error(libvirt.ErrOperationFailed, "operation failed: job 'restore' failed: load of migration failed: Input/output error")
	}
	return string(x), nil
}

// DomainSaveImageGetXMLDesc returns the domain XML of a save file.
func (f *Libvirt) DomainSaveImageGetXMLDesc(file string, flags uint32) (string, error) {
	err := f.enter("DomainSaveImageGetXMLDesc", "")
	defer f.mu.Unlock()
	if err != nil {
		return "", err
	}
	return readSave(file, false)
}

// DomainRestoreFlags starts the domain saved in from, running with the replacement XML dxml
// (or the saved one). As libvirt does, it rejects a replacement that changes the guest's ABI
// (here: virt type, UUID, memory, vCPUs, machine), a name held by a domain with another
// UUID, a UUID held by a domain with another name, and a domain that is already running.
// A defined, stopped domain of that name and UUID becomes the running one (its definition
// stays); otherwise a transient domain appears.
func (f *Libvirt) DomainRestoreFlags(from string, dxml libvirt.OptString, flags uint32) error {
	var nd libvirtxml.Domain
	if len(dxml) > 0 {
		if err := nd.Unmarshal(dxml[0]); err != nil {
			return Error(libvirt.ErrXMLError, "XML error: %v", err)
		}
	}
	err := f.enter("DomainRestoreFlags", nd.Name)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	name, x, err := f.restore(from, dxml)
	hook := f.onRestored
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if hook != nil {
		hook(name, x)
	}
	return nil
}

// restore is DomainRestoreFlags with f.mu held.
func (f *Libvirt) restore(from string, dxml libvirt.OptString) (string, string, error) {
	saved, err := readSave(from, true)
	if err != nil {
		return "", "", err
	}
	var sd libvirtxml.Domain
	if err := sd.Unmarshal(saved); err != nil {
		return "", "", Error(libvirt.ErrXMLError, "XML error in the save image: %v", err)
	}
	x := saved
	if len(dxml) > 0 {
		x = dxml[0]
	}
	var nd libvirtxml.Domain // a fresh one: Unmarshal writes into the pointers it finds
	if err := nd.Unmarshal(x); err != nil {
		return "", "", Error(libvirt.ErrXMLError, "XML error: %v", err)
	}
	if err := checkABI(&sd, &nd); err != nil {
		return "", "", err
	}
	uuid, err := parseUUID(nd.UUID)
	if err != nil {
		return "", "", Error(libvirt.ErrXMLError, "malformed uuid element")
	}
	for name, other := range f.doms {
		if other.uuid == uuid && name != nd.Name {
			return "", "", Error(libvirt.ErrOperationFailed, "operation failed: domain '%s' already exists with uuid %s", name, nd.UUID)
		}
	}
	fd, ok := f.doms[nd.Name]
	switch {
	case ok && fd.uuid != uuid:
		return "", "", Error(libvirt.ErrOperationFailed, "operation failed: domain '%s' is already defined with uuid %s", nd.Name, formatUUID(fd.uuid))
	case ok && fd.state != libvirt.DomainShutoff:
		return "", "", Error(libvirt.ErrOperationInvalid, "Requested operation is not valid: domain '%s' is already active", nd.Name)
	case !ok:
		fd = &dom{uuid: uuid, xml: x, transient: true}
		f.doms[nd.Name] = fd
	}
	fd.state, fd.reason = libvirt.DomainRunning, int32(libvirt.DomainRunningRestored)
	f.restored = append(f.restored, x)
	return nd.Name, x, nil
}

// checkABI is the part of libvirt's virDomainDefCheckABIStability a test can trip.
func checkABI(src, dst *libvirtxml.Domain) error {
	mismatch := func(what, got, want string) error {
		return Error(libvirt.ErrConfigUnsupported, "unsupported configuration: Target domain %s %s does not match source %s", what, got, want)
	}
	if src.Type != dst.Type {
		return mismatch("virt type", dst.Type, src.Type)
	}
	if !strings.EqualFold(src.UUID, dst.UUID) {
		return mismatch("uuid", dst.UUID, src.UUID)
	}
	if mem(src.Memory) != mem(dst.Memory) {
		return mismatch("max memory", mem(dst.Memory), mem(src.Memory))
	}
	if vcpus(src) != vcpus(dst) {
		return mismatch("vcpu count", vcpus(dst), vcpus(src))
	}
	if machine(src) != machine(dst) {
		return mismatch("machine type", machine(dst), machine(src))
	}
	return nil
}

func mem(m *libvirtxml.DomainMemory) string {
	if m == nil {
		return ""
	}
	return fmt.Sprintf("%d %s", m.Value, m.Unit)
}

func vcpus(d *libvirtxml.Domain) string {
	if d.VCPU == nil {
		return ""
	}
	return fmt.Sprint(d.VCPU.Value)
}

func machine(d *libvirtxml.Domain) string {
	if d.OS == nil || d.OS.Type == nil {
		return ""
	}
	return d.OS.Type.Machine
}
