// Package sandbox ties the pieces into a VM a user can trust and throw away: the image
// root, the kernel, the guest disk and overlay, the libvirt domain, and SSH. Each VM keeps
// its state in its own directory (0700): instance.json, the disk overlay, the console log.
package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/kmodvm/kmodvm/images/ondisk"
	"github.com/kmodvm/kmodvm/provision/kernel"
	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/remedy"
	"github.com/kmodvm/kmodvm/vm/sshclient"
)

// Instance is what kmodvm remembers about one VM (instance.json).
type Instance struct {
	Name string `json:"name"`
	// Domain is the libvirt domain name; empty in an instance.json written before domains
	// were named per user, whose domain is the legacy "kmodvm-NAME" (see DomainName).
	Domain    string   `json:"domain,omitempty"`
	UUID      string   `json:"uuid"`
	Accel     vm.Accel `json:"accel"`
	SSHPort   int      `json:"ssh_port"`
	FixedPort bool     `json:"fixed_port,omitempty"` // the user chose the port
	MemoryMiB int      `json:"memory_mib"`
	CPUs      int      `json:"cpus"`

	Kernel        string `json:"kernel"` // bzImage
	Cmdline       string `json:"cmdline"`
	KernelRelease string `json:"kernel_release"`
	KernelKey     string `json:"kernel_key"`
	ConfigHash    string `json:"config_hash"`
	// Vmlinux is the kernel's ELF with debug information (kernel.Result.Vmlinux), for
	// symbolizing its traces; "" unless the kernel is the debug variant.
	Vmlinux string `json:"vmlinux,omitempty"`

	Base      string `json:"base_disk"`
	DiskKey   string `json:"disk_key"`
	ClientKey string `json:"client_key"`
	HostPub   string `json:"host_pub"`

	RootDir   string            `json:"toolchain_root"` // for builds on the host
	RootHash  string            `json:"toolchain_root_hash"`
	KDir      string            `json:"kdir"` // the staged build tree on the host
	Toolchain map[string]string `json:"toolchain"`
	Suite     string            `json:"suite"`

	// Host holds the paths on a remote libvirt host the VM boots from (nil: a local VM,
	// whose domain names the files above).
	Host *HostFiles `json:"host,omitempty"`

	Created time.Time `json:"created"`
	// RestoredFrom says where the running guest came from: FromPristine, FromOwnSave, or ""
	// (booted).
	RestoredFrom string `json:"restored_from,omitempty"`

	dir string
}

// Dir is the VM's state directory.
func (in *Instance) Dir() string        { return in.dir }
func (in *Instance) Overlay() string    { return filepath.Join(in.dir, "overlay.qcow2") }
func (in *Instance) ConsoleLog() string { return filepath.Join(in.dir, "console.log") }
func (in *Instance) lockPath() string   { return filepath.Join(in.dir, "lock") }

// CrashesDir holds the VM's crash bundles (provision/crashes); destroy removes them with the
// rest of the state.
func (in *Instance) CrashesDir() string { return CrashesDir(in.dir) }

// CrashesDir is where the VM whose state directory is dir keeps its crash bundles.
func CrashesDir(dir string) string { return filepath.Join(dir, "crashes") }

// HostBuildsDir holds the directories modules are built in on the host for this VM.
func (in *Instance) HostBuildsDir() string { return filepath.Join(in.dir, "hostbuild") }

// HostBuildDir is where a module, known by name, is built on the host for this VM.
func (in *Instance) HostBuildDir(name string) string {
	return filepath.Join(in.HostBuildsDir(), name)
}

// DomainName is the instance's libvirt domain name.
func (in *Instance) DomainName() string {
	if in.Domain != "" {
		return in.Domain
	}
	return legacyDomainName(in.Name)
}

// legacy reports whether the instance predates per-user domain names and owner metadata.
func (in *Instance) legacy() bool { return in.Domain == "" }

// DomainSpec is the libvirt definition of the instance for the daemon behind uri, owned by
// user u.
func (in *Instance) DomainSpec(uri string, u User) vm.DomainSpec {
	kernel, disk, console := in.Kernel, in.Overlay(), in.ConsoleLog()
	if in.Host != nil {
		kernel, disk, console = in.Host.Kernel, in.Host.Overlay, in.Host.Console
	}
	return vm.DomainSpec{
		Name: in.DomainName(), UUID: in.UUID, Accel: in.Accel, MemoryMiB: in.MemoryMiB, CPUs: in.CPUs,
		Kernel: kernel, Cmdline: in.Cmdline, Disk: disk, ConsoleLog: console,
		SSHPort: in.SSHPort, QEMUUser: qemuUser(uri, u),
		Title: fmt.Sprintf("kmodvm VM %s of %s", in.Name, u),
		Owner: &vm.Owner{UID: u.UID, User: u.Name, StateDir: in.dir, VM: in.Name},
	}
}

// SSHConfig is how to reach the guest.
func (in *Instance) SSHConfig() (sshclient.Config, error) {
	cfg, err := sshclient.LoadConfig(fmt.Sprintf("127.0.0.1:%d", in.SSHPort), "root", in.ClientKey, in.HostPub)
	cfg.VM = in.Name
	return cfg, err
}

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

// CheckName rejects names that are not safe as a libvirt domain and directory name.
func CheckName(name string) error {
	if !nameRe.MatchString(name) {
		return remedy.With(fmt.Errorf("VM name %q is not valid: use 1-40 lower-case letters, digits and dashes, starting with a letter or digit", name), "", remedy.PickName)
	}
	return nil
}

// vmsDir holds one directory per VM.
func vmsDir(state string) string { return filepath.Join(state, "vms") }

// StateDir is where VM name keeps its state: instance, console log, saves, crash bundles.
func (s *Sandbox) StateDir(name string) string { return filepath.Join(vmsDir(s.opt.State), name) }

// DomainName is the libvirt name of a new VM name of user uid: prefixed so kmodvm never
// touches a user's other domains, and with the uid so that users sharing qemu:///system each
// get their own domain for the same VM name. With CheckName's 40 characters and a 32-bit uid
// it stays within libvirt's 64.
func DomainName(uid int, name string) string { return fmt.Sprintf("kmodvm-%d-%s", uid, name) }

// legacyDomainName is the domain name of a VM created before names carried the uid.
func legacyDomainName(name string) string { return "kmodvm-" + name }

// loadInstance reads a VM's instance.json; os.ErrNotExist when there is none.
func loadInstance(state, name string) (*Instance, error) {
	dir := filepath.Join(vmsDir(state), name)
	data, err := os.ReadFile(filepath.Join(dir, "instance.json"))
	if err != nil {
		return nil, err
	}
	var in Instance
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, remedy.With(fmt.Errorf("read %s: %w", filepath.Join(dir, "instance.json"), err), name, remedy.RemoveVM)
	}
	in.dir = dir
	return &in, nil
}

func (in *Instance) save() error {
	data, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return err
	}
	return ondisk.WriteFileAtomic(filepath.Join(in.dir, "instance.json"), data, 0o600)
}

// listInstances returns the names of VMs with a state directory.
func listInstances(state string) ([]string, error) {
	ents, err := os.ReadDir(vmsDir(state))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && nameRe.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// qemuUser is the static DAC label for the domain on uri. Under qemu:///system it makes QEMU
// run as the invoking user, so it can read the kernel, disks and logs under the user's home
// (which libvirt-qemu often cannot traverse) and the base disks can stay 0600. The session
// daemon already runs QEMU as the user and has no DAC driver at all ("Security driver model
// 'dac' is not available"); a remote daemon's users are not ours: no label for either.
func qemuUser(uri string, u User) string {
	if !isLocalSystem(uri) {
		return ""
	}
	gid := u.GID
	if u.QEMUGroup != 0 {
		gid = u.QEMUGroup
	}
	return fmt.Sprintf("+%d:+%d", u.UID, gid)
}

// systemQEMUDir is where the system daemon keeps each domain's private files (the master
// key QEMU must read): libvirt-qemu's, 0750 on Debian.
const systemQEMUDir = "/var/lib/libvirt/qemu"

// qemuGroup is the group QEMU needs, as an ordinary user under qemu:///system, to reach its
// domain's directory in systemQEMUDir (measured: with the user's own group QEMU dies on
// "Unable to read …/master-key.aes: Permission denied"); 0 when that cannot be told. QEMU
// keeps the user's supplementary groups (libvirt, kvm).
func qemuGroup(uid int) int {
	if uid == 0 {
		return 0
	}
	fi, err := os.Stat(systemQEMUDir)
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Gid)
	}
	return 0
}

// isLocalSystem reports whether uri is the local system daemon (qemu:///system, also with a
// query such as ?socket=PATH). An empty URI means qemu:///system.
func isLocalSystem(uri string) bool {
	if uri == "" {
		return true
	}
	u, err := url.Parse(uri)
	return err == nil && u.Scheme == "qemu" && u.Host == "" && u.Path == "/system"
}

// User is who runs kmodvm: the owner written into the domains it defines.
type User struct {
	UID, GID int
	// QEMUGroup, when not 0, is the group in QEMU's label instead of GID (see qemuGroup).
	QEMUGroup int
	Name      string // "" when the uid has no name
}

// String names the user for titles and messages: the name, else "uid N".
func (u User) String() string {
	if u.Name == "" {
		return "uid " + strconv.Itoa(u.UID)
	}
	return u.Name
}

// currentUser is the process's user.
func currentUser() User {
	u := User{UID: os.Getuid(), GID: os.Getgid()}
	u.QEMUGroup = qemuGroup(u.UID)
	u.Name = lookupUserName(u.UID)
	return u
}

// lookupUserName resolves uid to a name, "" when it does not resolve.
func lookupUserName(uid int) string {
	if pw, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return pw.Username
	}
	return ""
}

// KernelEntry is the cached kernel build the VM boots (the entry its bzImage is in).
func (in *Instance) KernelEntry() (*kernel.Result, error) {
	r, err := kernel.Open(filepath.Dir(in.Kernel))
	if errors.Is(err, os.ErrNotExist) {
		return nil, remedy.With(fmt.Errorf("the kernel VM %s boots is gone from the cache (%s): %w", in.Name, filepath.Dir(in.Kernel), err), in.Name, remedy.RecreateVM)
	}
	return r, err
}
