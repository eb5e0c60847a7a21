package config

import (
	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/provision/crashes"
	"github.com/kmodvm/kmodvm/provision/kernel"
	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/vm"
)

// FileName is the name of the project config file LoadDefault looks for.
const FileName = "kmodvm.yaml"

// Values of the enumerated settings: each is defined by the package that acts on it.
const (
	AccelAuto = string(vm.AccelAuto)
	AccelKVM  = string(vm.AccelKVM)
	AccelTCG  = string(vm.AccelTCG)

	URISystem  = vm.URISystem
	URISession = vm.URISession

	SuiteSid    = images.SuiteSid
	SuiteTrixie = images.SuiteTrixie

	InitTiny    = images.InitTiny
	InitSystemd = images.InitSystemd

	// SourcePackageName is the kernel.source value that selects the suite's linux-source package.
	SourcePackageName = "package"

	BaseSmall     = kernel.BaseSmall
	BaseDefconfig = kernel.BaseDefconfig

	BuildAuto  = module.BuildAuto
	BuildGuest = module.BuildGuest
	BuildHost  = module.BuildHost
)

// Default returns the settings used when kmodvm.yaml is absent or leaves a key out.
// Path and Dir are empty; Module.Dir is "." (Load and LoadDefault resolve it).
func Default() Config {
	image := images.DefaultSpec()
	return Config{
		Name: "kmodvm",
		VM: VM{
			// 1 GiB: the booted guest uses ~40 MiB (modules are built on the host), and a
			// restore loads every page of the guest's memory, so its size is restore time.
			Memory: 1024,
			CPUs:   1,
			Accel:  AccelAuto,
			Port:   0,
			URI:    URISystem,

			CrashRetention: crashes.DefaultKeep,
		},
		Image: Image{
			Suite:          image.Suite,
			Mirror:         image.Mirror,
			SnapshotMirror: image.SnapshotMirror, // the default mirror is a frozen snapshot
			Init:           image.Init,
		},
		Kernel: Kernel{
			Source: SourcePackageName,
			Base:   BaseSmall,
			Debug:  new(true),
		},
		Module: Module{
			Dir:     ".",
			Build:   BuildAuto,
			Timeout: module.DefaultTimeout,
		},
	}
}

// ExampleYAML is a complete kmodvm.yaml with every key at its default value and a comment
// saying what it means. README.md embeds it; a test checks that it loads to Default().
const ExampleYAML = `# kmodvm.yaml: project settings for kmodvm. Every key is optional; flags override them.
name: kmodvm              # VM name: [a-z0-9][a-z0-9-]{0,39}
vm:
  memory: 1024            # MiB, 256..65536
  cpus: 1                 # 1..64
  accel: auto             # auto|kvm|tcg
  port: 0                 # host SSH forward port on 127.0.0.1; 0 = pick a free one; else 1024..65535
  uri: qemu:///system     # libvirt URI (qemu:///system or qemu:///session)
  crash_retention: 20     # crash bundles kept per VM, newest first (kmodvm crashes); 0..1000, 0 = none
image:
  suite: sid              # sid|trixie
  mirror: http://deb.debian.org/debian
  snapshot_mirror: true   # the mirror is a frozen snapshot: apt accepts its expired Release
                          # files (Acquire::Check-Valid-Until "false"); default true for the
                          # default mirror, false for a mirror you name; changing it rebuilds the root
  packages: []            # extra Debian packages in the guest/toolchain root, e.g. [strace, gdb]
  init: tiny              # tiny (a tiny init that starts sshd) | systemd
kernel:
  source: package         # "package" (the suite's linux-source), a local kernel tree path,
                          # or a tarball path or http(s) URL (.tar, .tar.gz, .tgz, .tar.xz, ...)
  sha256: ""              # required (64 hex digits) when source is a tarball; an error otherwise
  base: small             # small|defconfig
  fragments: []           # each: an inline "CONFIG_X=y" / "# CONFIG_X is not set" line,
                          # an in-tree name like "kvm_guest.config",
                          # or a file path such as "./debug.config" (relative to this file)
  patches: []             # patch files applied in order to this kernel's sources (never to
                          # your tree), relative to this file: git format-patch files, mbox
                          # series (git am style) or diff -u; e.g. [./0001-fix.patch]
  bindings: []            # headers bindgen binds for this kernel's Rust bindings,
                          # e.g. [linux/iio/iio.h]; checked after the build
  jobs: 0                 # make -j; 0 = number of CPUs
  debug: true             # DWARF line tables and the ORC unwinder, vmlinux kept: traces
                          # show file:line; false: a plainer kernel, built faster
module:
  dir: .                  # default module dir for run/sync (relative to this file)
  params: []              # "name=value" module parameters for insmod
  build: auto             # auto|guest|host
  timeout: 2m             # how long a load may take before the guest is judged hung
`
