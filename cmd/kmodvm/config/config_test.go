package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// testPath is where parse pretends test snippets live.
const testPath = "/proj/kmodvm.yaml"

func parseString(s string) (Config, error) {
	return parse([]byte(s), FileName, testPath)
}

// withDefaults returns Default() as parse returns it for a file at testPath, changed by edit.
func withDefaults(edit func(*Config)) Config {
	c := Default()
	c.Path = testPath
	c.Dir = "/proj"
	c.Module.Dir = "/proj"
	if edit != nil {
		edit(&c)
	}
	return c
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want Config
	}{
		{"empty file", "", withDefaults(nil)},
		{"only comments", "# nothing here\n\n", withDefaults(nil)},
		{"empty document", "---\n", withDefaults(nil)},
		{"null sections keep defaults", "vm:\nimage: ~\nkernel:\nmodule:\n", withDefaults(nil)},
		{"null value keeps default", "vm:\n  memory: ~\n", withDefaults(nil)},
		{"empty lists", "image:\n  packages: []\nkernel:\n  fragments: []\n  patches: []\n  bindings: []\nmodule:\n  params: []\n", withDefaults(nil)},
		{"full file", `name: rust-dev
vm:
  memory: 4096
  cpus: 2
  accel: tcg
  port: 2222
  uri: qemu:///session
  crash_retention: 5
image:
  suite: trixie
  mirror: https://mirror.example.org/debian
  packages: [strace, gdb, libc6-dev, g++]
  init: systemd
kernel:
  source: ../linux-7.2.tar.xz
  sha256: ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789
  base: defconfig
  fragments:
    - CONFIG_KASAN=y
    - "# CONFIG_DEBUG_INFO_BTF is not set"
    - CONFIG_CMDLINE="console=ttyS0"
    - kvm_guest.config
    - ./debug.config
    - /etc/kmodvm/extra.config
  patches: [./patches/0001-fix.patch, /srv/series.mbox]
  bindings: [linux/iio/iio.h, asm/msr.h]
  jobs: 2
  debug: true
module:
  dir: examples/rust
  params: [debug=1, mod.name=a b c, empty=]
  build: guest
  timeout: 90s
`, withDefaults(func(c *Config) {
			c.Name = "rust-dev"
			c.VM = VM{Memory: 4096, CPUs: 2, Accel: AccelTCG, Port: 2222, URI: URISession, CrashRetention: 5}
			c.Image = Image{Suite: SuiteTrixie, Mirror: "https://mirror.example.org/debian",
				Packages: []string{"strace", "gdb", "libc6-dev", "g++"}, Init: InitSystemd}
			c.Kernel = Kernel{
				Source: "/linux-7.2.tar.xz",
				SHA256: "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
				Base:   BaseDefconfig,
				Fragments: []string{"CONFIG_KASAN=y", "# CONFIG_DEBUG_INFO_BTF is not set", `CONFIG_CMDLINE="console=ttyS0"`,
					"kvm_guest.config", "/proj/debug.config", "/etc/kmodvm/extra.config"},
				Patches:  []string{"/proj/patches/0001-fix.patch", "/srv/series.mbox"},
				Bindings: []string{"linux/iio/iio.h", "asm/msr.h"},
				Jobs:     2,
				Debug:    new(true),
			}
			c.Module = Module{Dir: "/proj/examples/rust", Params: []string{"debug=1", "mod.name=a b c", "empty="},
				Build: BuildGuest, Timeout: 90 * time.Second}
		})},
		{"plain kernel may turn debug info off", "kernel:\n  debug: false\n  fragments: [\"# CONFIG_DEBUG_INFO is not set\"]\n", withDefaults(func(c *Config) {
			c.Kernel.Debug = new(false)
			c.Kernel.Fragments = []string{"# CONFIG_DEBUG_INFO is not set"}
		})},
		{"kernel tree and URL", "kernel:\n  source: /src/linux\n", withDefaults(func(c *Config) { c.Kernel.Source = "/src/linux" })},
		{"relative kernel tree", "kernel:\n  source: ../linux\n", withDefaults(func(c *Config) { c.Kernel.Source = "/linux" })},
		{"tarball URL", "kernel:\n  source: https://cdn.kernel.org/pub/linux/kernel/v7.x/linux-7.2.tar.xz\n  sha256: " + strings.Repeat("ab", 32) + "\n",
			withDefaults(func(c *Config) {
				c.Kernel.Source = "https://cdn.kernel.org/pub/linux/kernel/v7.x/linux-7.2.tar.xz"
				c.Kernel.SHA256 = strings.Repeat("ab", 32)
			})},
		{"default mirror is a snapshot", "image:\n  suite: trixie\n", withDefaults(func(c *Config) { c.Image.Suite = SuiteTrixie })},
		{"own mirror is live unless said", "image:\n  mirror: https://mirror.example.org/debian\n",
			withDefaults(func(c *Config) { c.Image.Mirror = "https://mirror.example.org/debian"; c.Image.SnapshotMirror = false })},
		{"own snapshot mirror", "image:\n  mirror: https://snapshot.example.org/debian\n  snapshot_mirror: true\n",
			withDefaults(func(c *Config) { c.Image.Mirror = "https://snapshot.example.org/debian" })},
		{"default mirror, written with a slash", "image:\n  mirror: http://deb.debian.org/debian/\n",
			withDefaults(func(c *Config) { c.Image.Mirror = "http://deb.debian.org/debian/" })},
		{"default mirror checked", "image:\n  snapshot_mirror: false\n", withDefaults(func(c *Config) { c.Image.SnapshotMirror = false })},
		{"param value with newline", "module:\n  params: [\"msg=a\\nb\"]\n", withDefaults(func(c *Config) { c.Module.Params = []string{"msg=a\nb"} })},
		{"absolute module dir", "module:\n  dir: /home/me/mod\n", withDefaults(func(c *Config) { c.Module.Dir = "/home/me/mod" })},
		{"remote libvirt", "vm:\n  uri: qemu+ssh://me@box/system\n", withDefaults(func(c *Config) { c.VM.URI = "qemu+ssh://me@box/system" })},
		{"anchors and aliases", "name: &n box\nvm:\n  accel: &a kvm\nimage:\n  packages: [*n]\n",
			withDefaults(func(c *Config) { c.Name = "box"; c.VM.Accel = AccelKVM; c.Image.Packages = []string{"box"} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseString(tt.yaml)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

const docHint = "; hint: see the keys documented in README.md#configuration"

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // the whole error text
	}{
		// Unknown keys, at top level and in each section, with the line and a suggestion.
		{"unknown nested key", "name: x\nvm:\n  cpus: 1\n\n  accel: kvm\n\n  memroy: 4096\n",
			`kmodvm.yaml:7: unknown key "memroy" in section "vm" (did you mean "memory"?)` + docHint},
		{"unknown top-level key", "# settings\nnmae: x\n", `kmodvm.yaml:2: unknown key "nmae" at top level (did you mean "name"?)` + docHint},
		{"misspelt section", "vm:\n  cpus: 2\nkernal:\n  base: small\n", `kmodvm.yaml:3: unknown key "kernal" at top level (did you mean "kernel"?)` + docHint},
		{"upper case key", "vm:\n  CPUs: 2\n", `kmodvm.yaml:2: unknown key "CPUs" in section "vm" (did you mean "cpus"?)` + docHint},
		{"prefix of a key", "image:\n  pkg: [a]\n  pack: [vim]\n",
			`kmodvm.yaml:2: unknown key "pkg" in section "image" (known keys: suite, mirror, snapshot_mirror, packages, init)` + docHint + "\n" +
				`kmodvm.yaml:3: unknown key "pack" in section "image" (did you mean "packages"?)` + docHint},
		{"snapshot_mirror not a bool", "image:\n  snapshot_mirror: \"yes\"\n",
			`kmodvm.yaml:2: image.snapshot_mirror: expected true or false, got "yes"` + docHint},
		{"key of another section at top level", "memory: 4096\n",
			`kmodvm.yaml:1: unknown key "memory" at top level (did you mean "vm.memory"? it belongs in section "vm")` + docHint},
		{"key of another section", "kernel:\n  suite: trixie\n",
			`kmodvm.yaml:2: unknown key "suite" in section "kernel" (did you mean "image.suite"? it belongs in section "image")` + docHint},
		{"top-level key in a section", "module:\n  name: x\n",
			`kmodvm.yaml:2: unknown key "name" in section "module" (did you mean the top-level key "name"?)` + docHint},
		{"nothing close", "kernel:\n  flavour: rt\n",
			`kmodvm.yaml:2: unknown key "flavour" in section "kernel" (known keys: source, sha256, base, fragments, patches, bindings, jobs, debug)` + docHint},
		{"merge key", "<<: {name: x}\n", `kmodvm.yaml:1: unknown key "<<" at top level (known keys: name, vm, image, kernel, module)` + docHint},
		{"complex key", "? [a]\n: b\n", `kmodvm.yaml:1: expected a plain word as a key at top level, got a list` + docHint},

		// Duplicate keys.
		{"duplicate top-level key", "name: a\nvm: {}\nname: b\n", `kmodvm.yaml:3: key "name" at top level is already set at line 1; hint: remove one of them`},
		{"duplicate nested key", "vm:\n  memory: 1024\n  cpus: 2\n  memory: 2048\n", `kmodvm.yaml:4: key "memory" in section "vm" is already set at line 2; hint: remove one of them`},
		{"duplicate section", "vm:\n  cpus: 2\nvm:\n  cpus: 3\n", `kmodvm.yaml:3: key "vm" at top level is already set at line 1; hint: remove one of them`},

		// Syntax.
		{"tab indentation", "vm:\n\tmemory: 1\n", `kmodvm.yaml:2: yaml: found character that cannot start any token; hint: fix the syntax in kmodvm.yaml`},
		{"unclosed flow list", "vm:\n  cpus: 1\nimage:\n  packages: [vim\n", `kmodvm.yaml:4: yaml: did not find expected ',' or ']'; hint: fix the syntax in kmodvm.yaml`},
		{"error on the first line", "a: b: c\n", `kmodvm.yaml:1: yaml: mapping values are not allowed in this context; hint: fix the syntax in kmodvm.yaml`},
		{"unclosed quote", "name: x\nvm:\n  uri: \"qemu:///system\n", `kmodvm.yaml:3: yaml: found unexpected end of stream; hint: fix the syntax in kmodvm.yaml`},
		{"bad indentation", "vm:\n  cpus: 1\n memory: 2\n", `kmodvm.yaml:3: yaml: did not find expected key; hint: fix the syntax in kmodvm.yaml`},
		{"two documents", "name: a\n---\nname: b\n", `kmodvm.yaml:2: a second YAML document starts here; kmodvm.yaml holds one; hint: remove the "---" line and merge the documents`},

		// Wrong shapes and types.
		{"top level is a list", "- vm\n", `kmodvm.yaml:1: expected keys such as "name:" and "vm:" at top level, got a list` + docHint},
		{"top level is a scalar", "hello\n", `kmodvm.yaml:1: expected keys such as "name:" and "vm:" at top level, got "hello"` + docHint},
		{"section is a scalar", "vm: big\n", `kmodvm.yaml:1: vm: expected a section of "key: value" lines, got "big"; hint: see the keys documented in README.md#configuration`},
		{"section is a list", "kernel:\n  - source: package\n", `kmodvm.yaml:2: kernel: expected a section of "key: value" lines, got a list; hint: see the keys documented in README.md#configuration`},
		{"number with unit", "vm:\n  memory: 2G\n", `kmodvm.yaml:2: vm.memory: expected a whole number such as 1024, got "2G"; hint: remove vm.memory to use the default, 1024`},
		{"fraction", "vm:\n  cpus: 1.5\n", `kmodvm.yaml:2: vm.cpus: expected a whole number such as 1, got "1.5"; hint: remove vm.cpus to use the default, 1`},
		{"quoted number", "vm:\n  port: \"2222\"\n", `kmodvm.yaml:2: vm.port: expected a whole number such as 0, got the quoted text "2222"; hint: remove the quotes`},
		{"number is a list", "kernel:\n  jobs: [2]\n", `kmodvm.yaml:2: kernel.jobs: expected a whole number such as 0, got a list; hint: see the keys documented in README.md#configuration`},
		{"string is a section", "name:\n  first: a\n", `kmodvm.yaml:2: name: expected a string, got a section of "key: value" lines; hint: remove name to use the default, "kmodvm"`},
		{"duration without unit", "module:\n  timeout: 600\n", `kmodvm.yaml:2: module.timeout: expected a duration such as 10m or 90s, got "600"; hint: remove module.timeout to use the default, 2m0s`},
		{"bad duration", "module:\n  timeout: ten minutes\n", `kmodvm.yaml:2: module.timeout: expected a duration such as 10m or 90s, got "ten minutes"; hint: remove module.timeout to use the default, 2m0s`},
		{"list is a scalar", "image:\n  packages: vim\n", `kmodvm.yaml:2: image.packages: expected a list such as [a, b] or lines starting with "- ", got "vim"; hint: see the keys documented in README.md#configuration`},
		{"list item is a section", "kernel:\n  fragments:\n    - CONFIG_KASAN=y\n    - {file: x}\n", `kmodvm.yaml:4: kernel.fragments[1]: expected a string, got a section of "key: value" lines; hint: see the keys documented in README.md#configuration`},
		{"several type errors", "vm:\n  memory: lots\n  cpus: many\n",
			"kmodvm.yaml:2: vm.memory: expected a whole number such as 1024, got \"lots\"; hint: remove vm.memory to use the default, 1024\n" +
				"kmodvm.yaml:3: vm.cpus: expected a whole number such as 1, got \"many\"; hint: remove vm.cpus to use the default, 1"},

		// Values out of range and not in the enumerations.
		{"bad accel", "vm:\n  memory: 2048\n\n  cpus: 2\n  accel: fast\n", `kmodvm.yaml:5: vm.accel: "fast" is not one of auto, kvm, tcg; hint: remove vm.accel to use the default, "auto"`},
		{"bad suite", "image:\n  suite: bookworm\n", `kmodvm.yaml:2: image.suite: "bookworm" is not one of sid, trixie; hint: remove image.suite to use the default, "sid"`},
		{"bad init", "image:\n  init: openrc\n", `kmodvm.yaml:2: image.init: "openrc" is not one of tiny, systemd; hint: remove image.init to use the default, "tiny"`},
		{"bad base", "kernel:\n  base: tinyconfig\n", `kmodvm.yaml:2: kernel.base: "tinyconfig" is not one of small, defconfig; hint: remove kernel.base to use the default, "small"`},
		{"bad build", "module:\n  build: remote\n", `kmodvm.yaml:2: module.build: "remote" is not one of auto, guest, host; hint: remove module.build to use the default, "auto"`},
		{"memory too small", "vm:\n  memory: 128\n", `kmodvm.yaml:2: vm.memory: 128 is not in 256..65536 MiB; hint: remove vm.memory to use the default, 1024`},
		{"too many cpus", "vm:\n  cpus: 65\n", `kmodvm.yaml:2: vm.cpus: 65 is not in 1..64; hint: remove vm.cpus to use the default, 1`},
		{"privileged port", "vm:\n  port: 22\n", `kmodvm.yaml:2: vm.port: 22 is not 0 (pick a free port) or a port in 1024..65535; hint: use a free port such as 2222, or 0`},
		{"debug not a bool", "kernel:\n  debug: yes please\n", `kmodvm.yaml:2: kernel.debug: expected true or false, got "yes please"` + docHint},
		{"debug info turned off in a debug kernel", "kernel:\n  debug: true\n  fragments:\n    - CONFIG_KASAN=y\n    - \"# CONFIG_DEBUG_INFO is not set\"\n",
			`kmodvm.yaml:5: kernel.fragments[1]: turns off CONFIG_DEBUG_INFO, which the debug kernel (kernel.debug, on unless set to false) needs for debug information; hint: remove the line, or set kernel.debug: false`},
		{"debug info turned off in the default kernel", "kernel:\n  fragments: [\"# CONFIG_DEBUG_INFO is not set\"]\n",
			`kmodvm.yaml:2: kernel.fragments[0]: turns off CONFIG_DEBUG_INFO, which the debug kernel (kernel.debug, on unless set to false) needs for debug information; hint: remove the line, or set kernel.debug: false`},
		{"debug kernel turned off with =n", "kernel:\n  debug: true\n  fragments: [CONFIG_DEBUG_KERNEL=n]\n",
			`kmodvm.yaml:3: kernel.fragments[0]: turns off CONFIG_DEBUG_KERNEL, which the debug kernel (kernel.debug, on unless set to false) needs for debug information; hint: remove the line, or set kernel.debug: false`},
		{"negative jobs", "kernel:\n  jobs: -1\n", `kmodvm.yaml:2: kernel.jobs: -1 is not 0 (one job per CPU) or a job count in 1..1024; hint: see the keys documented in README.md#configuration`},
		{"non-QEMU URI", "vm:\n  uri: xen:///system\n", `kmodvm.yaml:2: vm.uri: "xen:///system" is not a libvirt QEMU URI; hint: use qemu:///system, qemu:///session or a remote one such as qemu+ssh://user@host/system`},
		{"bad mirror", "image:\n  mirror: deb.debian.org\n", `kmodvm.yaml:2: image.mirror: "deb.debian.org" is not an http(s) URL of a Debian mirror, such as "http://deb.debian.org/debian"; hint: remove image.mirror to use the default, "http://deb.debian.org/debian"`},
		{"bad package", "image:\n  packages:\n    - vim\n    - Vim\n", `kmodvm.yaml:4: image.packages[1]: "Vim" is not a Debian package name; hint: use lower-case letters, digits and + . -, at least 2 characters, starting with a letter or digit`},
		{"negative timeout", "module:\n  timeout: -5m\n", `kmodvm.yaml:2: module.timeout: "-5m0s" is not a positive duration; hint: use one such as 10m or 90s`},

		// Names.
		{"upper-case name", "name: MyVM\n", `kmodvm.yaml:1: name: "MyVM" is not a valid VM name; hint: use 1 to 40 lower-case letters, digits and dashes, starting with a letter or digit, such as "kmodvm" or "rust-dev"`},
		{"name starts with dash", "name: -vm\n", `kmodvm.yaml:1: name: "-vm" is not a valid VM name; hint: use 1 to 40 lower-case letters, digits and dashes, starting with a letter or digit, such as "kmodvm" or "rust-dev"`},
		{"empty name", "name: \"\"\n", `kmodvm.yaml:1: name: "" is not a valid VM name; hint: use 1 to 40 lower-case letters, digits and dashes, starting with a letter or digit, such as "kmodvm" or "rust-dev"`},
		{"long name", "name: " + strings.Repeat("a", 41) + "\n", `kmodvm.yaml:1: name: "` + strings.Repeat("a", 41) + `" is not a valid VM name; hint: use 1 to 40 lower-case letters, digits and dashes, starting with a letter or digit, such as "kmodvm" or "rust-dev"`},

		// Kernel source and digest.
		{"tarball without sha256", "kernel:\n  base: small\n  source: linux-7.2.tar.xz\n",
			`kmodvm.yaml:3: kernel.source: "/proj/linux-7.2.tar.xz" is a tarball, so kernel.sha256 must hold its SHA-256 digest (64 hex digits); hint: run sha256sum on the tarball and put the digest in kernel.sha256`},
		{"URL without sha256", "kernel:\n  source: https://example.org/linux.tar.gz\n",
			`kmodvm.yaml:2: kernel.source: "https://example.org/linux.tar.gz" is a tarball, so kernel.sha256 must hold its SHA-256 digest (64 hex digits); hint: run sha256sum on the tarball and put the digest in kernel.sha256`},
		{"short sha256", "kernel:\n  source: linux.tgz\n  sha256: abc123\n", `kmodvm.yaml:3: kernel.sha256: "abc123" is not a SHA-256 digest: it must be 64 hex digits; hint: run sha256sum on the tarball and put the digest in kernel.sha256`},
		{"sha256 without tarball", "kernel:\n  sha256: " + strings.Repeat("0", 64) + "\n",
			`kmodvm.yaml:2: kernel.sha256: is set but kernel.source "package" is not a tarball; hint: remove kernel.sha256, or point kernel.source at a tarball (.tar.xz, .tar.gz, ...) or an http(s) URL`},
		{"home-relative source", "kernel:\n  source: ~/linux\n", `kmodvm.yaml:2: kernel.source: "~/linux" starts with "~", which kmodvm does not expand; hint: write the full path or one relative to kmodvm.yaml`},

		// Fragments and parameters.
		{"config line without value", "kernel:\n  fragments: [CONFIG_KASAN]\n", `kmodvm.yaml:2: kernel.fragments[0]: "CONFIG_KASAN" is not a kernel config line; hint: write it as CONFIG_NAME=y (or =m, =n, a number, a "quoted string") or as "# CONFIG_NAME is not set"`},
		{"unset line without space", "kernel:\n  fragments:\n    - \"#CONFIG_KASAN is not set\"\n", `kmodvm.yaml:3: kernel.fragments[0]: "#CONFIG_KASAN is not set" is not a kernel config line; hint: write it as CONFIG_NAME=y (or =m, =n, a number, a "quoted string") or as "# CONFIG_NAME is not set"`},
		{"param without value", "module:\n  params:\n    - debug=1\n    - verbose\n", `kmodvm.yaml:4: module.params[1]: "verbose" is not a module parameter: write it as name=value, such as "debug=1"; hint: see the keys documented in README.md#configuration`},
		{"bad param name", "module:\n  params: [\"1x=2\"]\n", `kmodvm.yaml:2: module.params[0]: "1x" is not a module parameter name: use letters, digits, _ and ., starting with a letter or _; hint: see the keys documented in README.md#configuration`},
		{"param value with NUL", "module:\n  params: [\"msg=a\\0b\"]\n", `kmodvm.yaml:2: module.params[0]: the value of "msg" contains a NUL byte, which no command argument can carry; hint: see the keys documented in README.md#configuration`},
		{"empty module dir", "module:\n  dir: \"\"\n", `kmodvm.yaml:2: module.dir: is empty; hint: give a path`},

		// Patches and bindings.
		{"home-relative patch", "kernel:\n  patches:\n    - ./a.patch\n    - ~/b.patch\n", `kmodvm.yaml:4: kernel.patches[1]: "~/b.patch" starts with "~", which kmodvm does not expand; hint: write the full path or one relative to kmodvm.yaml`},
		{"patch is a section", "kernel:\n  patches:\n    - {file: a.patch}\n", `kmodvm.yaml:3: kernel.patches[0]: expected a string, got a section of "key: value" lines` + docHint},
		{"binding with angle brackets", "kernel:\n  bindings: [\"<linux/iio/iio.h>\"]\n", `kmodvm.yaml:2: kernel.bindings[0]: "<linux/iio/iio.h>" is not a header path; hint: write it as #include <...> names it, relative to the kernel's include/, such as "linux/iio/iio.h", without #include, <> or quotes`},
		{"binding under include/", "kernel:\n  bindings:\n    - linux/slab.h\n    - include/linux/iio/iio.h\n", `kmodvm.yaml:4: kernel.bindings[1]: "include/linux/iio/iio.h" is not a header path as #include names it; hint: write it as #include <...> names it, relative to the kernel's include/, such as "linux/iio/iio.h" (leave out include/)`},
		{"binding not a header", "kernel:\n  bindings: [linux/iio]\n", `kmodvm.yaml:2: kernel.bindings[0]: "linux/iio" is not a header path; hint: write it as #include <...> names it, relative to the kernel's include/, such as "linux/iio/iio.h"`},
		{"binding climbs out", "kernel:\n  bindings: [../secret.h]\n", `kmodvm.yaml:2: kernel.bindings[0]: "../secret.h" is not a header path; hint: write it as #include <...> names it, relative to the kernel's include/, such as "linux/iio/iio.h"`},

		// Several problems are all reported, in line order.
		{"several invalid values", "vm:\n  cpus: 0\nname: BAD\n",
			"kmodvm.yaml:2: vm.cpus: 0 is not in 1..64; hint: remove vm.cpus to use the default, 1\n" +
				`kmodvm.yaml:3: name: "BAD" is not a valid VM name; hint: use 1 to 40 lower-case letters, digits and dashes, starting with a letter or digit, such as "kmodvm" or "rust-dev"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseString(tt.yaml)
			if err == nil {
				t.Fatalf("parse succeeded, want error:\n%s", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got: %s\nwant: %s", err, tt.want)
			}
			checkUserError(t, err)
		})
	}
}

// quoted matches the user's values that messages quote, which may say anything.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

var goTypeNames = regexp.MustCompile(`\[\]string|time\.Duration|config\.|struct|unmarshal|!!|\bint\b|\bint64\b`)

// checkUserError checks what every error from parse must be: *Error values, one line each
// (one paragraph), starting with the file name, with no Go type names.
func checkUserError(t testing.TB, err error) {
	t.Helper()
	errs := flatten(err)
	if len(errs) > maxErrors+1 {
		t.Errorf("%d errors, more than %d and a summary", len(errs), maxErrors)
	}
	for _, err := range errs {
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("error %q is not a *config.Error", err)
			continue
		}
		line := e.Error()
		if strings.Contains(line, "\n") || !strings.HasPrefix(line, FileName+":") || !strings.Contains(line, "; hint: ") {
			t.Errorf("error %q is not one paragraph starting with %q and giving a hint", line, FileName+":")
		}
		if m := goTypeNames.FindString(quoted.ReplaceAllString(line, `"..."`)); m != "" {
			t.Errorf("error %q names a Go type (%q)", line, m)
		}
	}
}

// TestParseHostile loads files made to hurt a YAML loader: each must give a few errors,
// each one paragraph with a hint, in reasonable time and memory.
func TestParseHostile(t *testing.T) {
	laughs := "image:\n  packages: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
	for i := range 8 {
		laughs += fmt.Sprintf("  p%d: &a%d [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n", i, i)
	}
	var unknown strings.Builder
	for i := range 50_000 {
		fmt.Fprintf(&unknown, "k%d: 1\n", i)
	}
	tests := []struct {
		name   string
		yaml   string
		errors int // how many the load reports
	}{
		{"billion laughs", laughs, 8},
		{"100,000 aliases as list items", "name: &n x\nimage:\n  packages: [" + strings.Repeat("*n, ", 100_000) + "*n]\n", maxErrors + 1},
		{"list of lists", "image:\n  packages: &a [[x]]\nkernel:\n  fragments: [*a, *a]\n", 3},
		{"nested flow", "name: " + strings.Repeat("[", 100_000), 1},
		{"nested blocks", strings.Repeat("- ", 10_000) + "x", 1},
		{"a 1 MB key", strings.Repeat("k", 1<<20) + ": 1\n", 1},
		{"50,000 unknown keys", unknown.String(), maxErrors + 1},
		{"100,000 bad packages", "image:\n  packages: [" + strings.Repeat("V, ", 100_000) + "V]\n", maxErrors + 1},
		{"alias of a section", "vm: &v {memory: 1024}\nimage: *v\n", 1},
		{"NUL and controls", "name: \"a\\0b\\x1b[2J\"\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseString(tt.yaml)
			if err == nil {
				t.Fatal("loaded")
			}
			checkUserError(t, err)
			if n := len(flatten(err)); n != tt.errors {
				t.Errorf("%d errors, want %d: %v", n, tt.errors, err)
			}
		})
	}
}

// TestEveryKeyTypo misspells each key of ExampleYAML in turn and checks the error names the
// key's line and suggests the right spelling.
func TestEveryKeyTypo(t *testing.T) {
	keyLine := regexp.MustCompile(`^(\s*)([a-z0-9_]+):`)
	lines := strings.Split(ExampleYAML, "\n")
	section := ""
	n := 0
	for i, line := range lines {
		m := keyLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		key := m[2]
		if m[1] == "" {
			section = ""
		}
		typo := key[1:] + key[:1] // swap the letters of "vm"
		if len(key) > 2 {
			typo = key[:1] + key[2:3] + key[1:2] + key[3:] // swap the 2nd and 3rd letters
		}
		if typo == key { // "accel"
			typo = key[:len(key)-1]
		}
		changed := append([]string(nil), lines...)
		changed[i] = strings.Replace(line, key+":", typo+":", 1)
		where := "at top level"
		if section != "" {
			where = fmt.Sprintf("in section %q", section)
		}
		want := fmt.Sprintf("kmodvm.yaml:%d: unknown key %q %s (did you mean %q?)%s", i+1, typo, where, key, docHint)
		t.Run(section+"."+key, func(t *testing.T) {
			_, err := parseString(strings.Join(changed, "\n"))
			if err == nil || err.Error() != want {
				t.Errorf("error:\n got: %v\nwant: %s", err, want)
			}
		})
		if m[1] == "" {
			section = key
		}
		n++
	}
	if n != 28 { // name, 4 sections, 23 keys in them
		t.Errorf("found %d keys in ExampleYAML, want 28", n)
	}
}

func TestExampleYAML(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, []byte(ExampleYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatalf("Load(ExampleYAML): %v", err)
	}
	// The documented differences: Load records where the file is and makes module.dir absolute.
	want := Default()
	want.Path = path
	want.Dir = dir
	want.Module.Dir = dir
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ExampleYAML loads as\n%+v\nwant Default() with Path, Dir and Module.Dir set:\n%+v", got, want)
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	content := "kernel:\n  source: ../linux\n  fragments: [./extra.config, kvm_guest.config]\nmodule:\n  dir: mod\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Path != path || c.Dir != dir {
		t.Errorf("Path, Dir = %q, %q; want %q, %q", c.Path, c.Dir, path, dir)
	}
	if want := filepath.Join(filepath.Dir(dir), "linux"); c.Kernel.Source != want {
		t.Errorf("Kernel.Source = %q, want %q", c.Kernel.Source, want)
	}
	if want := []string{filepath.Join(dir, "extra.config"), "kvm_guest.config"}; !reflect.DeepEqual(c.Kernel.Fragments, want) {
		t.Errorf("Kernel.Fragments = %q, want %q", c.Kernel.Fragments, want)
	}
	if want := filepath.Join(dir, "mod"); c.Module.Dir != want {
		t.Errorf("Module.Dir = %q, want %q", c.Module.Dir, want)
	}

	// LoadDefault finds the same file.
	d, err := LoadDefault(dir)
	if err != nil || !reflect.DeepEqual(c, d) {
		t.Errorf("LoadDefault(%q) = %+v, %v; want %+v", dir, d, err, c)
	}

	// Errors name the path as given.
	if err := os.WriteFile(path, []byte("vm:\n  cpu: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if want := path + `:2: unknown key "cpu" in section "vm" (did you mean "cpus"?)` + docHint; err == nil || err.Error() != want {
		t.Errorf("Load error:\n got: %v\nwant: %s", err, want)
	}
}

func TestLoadMissing(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(filepath.Join(dir, FileName))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want an error wrapping fs.ErrNotExist", err)
	}

	c, err := LoadDefault(dir)
	if err != nil {
		t.Fatalf("LoadDefault(dir without %s): %v", FileName, err)
	}
	want := Default()
	want.Dir = dir
	want.Module.Dir = dir
	if !reflect.DeepEqual(c, want) {
		t.Errorf("LoadDefault = %+v, want %+v", c, want)
	}

	// A kmodvm.yaml that cannot be read is an error, not a silent fallback to defaults.
	if err := os.Mkdir(filepath.Join(dir, FileName), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDefault(dir); err == nil {
		t.Error("LoadDefault with kmodvm.yaml a directory succeeded, want an error")
	}
}

// TestDecodeError covers the backstop for errors from yaml.v3's strict decode that the walk
// lets through: they still get positions and lose the Go type names.
func TestDecodeError(t *testing.T) {
	err := decodeError(FileName, &yaml.TypeError{Errors: []string{
		"line 3: cannot unmarshal !!str `x` into int",
		"line 5: field memroy not found in type config.VM",
		`line 7: mapping key "cpus" already defined at line 6`,
		"line 8: something new in type config.Config",
	}})
	want := "kmodvm.yaml:3: the value `x` does not fit this setting" + docHint + "\n" +
		`kmodvm.yaml:5: unknown key "memroy"` + docHint + "\n" +
		`kmodvm.yaml:7: key "cpus" is already set at line 6` + docHint + "\n" +
		"kmodvm.yaml:8: something new" + docHint
	if err == nil || err.Error() != want {
		t.Errorf("decodeError:\n got: %v\nwant: %s", err, want)
	}
	checkUserError(t, err)
}
