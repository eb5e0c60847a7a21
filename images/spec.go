// Package images builds kmodvm's Debian toolchain root (with mmdebstrap), runs commands in it
// (with bwrap), and packs it with a kernel's modules and build tree into a cached qcow2 base
// disk for the guest, with one qcow2 overlay per VM.
package images

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// FormatVersion identifies the root build recipe (mmdebstrap options, base packages, the
// checks run after the build). Bump it whenever the recipe changes: every cached root is
// then rebuilt.
const FormatVersion = 2

// Init systems the guest can boot with.
const (
	InitTiny    = "tiny"    // /sbin/kmodvm-init: mount, network, exec sshd (default, fast under TCG)
	InitSystemd = "systemd" // systemd as PID 1 (slow under TCG: ~50 s to SSH)
)

// Debian suites kmodvm builds roots of: sid has the Rust-enabled kernels, trixie the 6.12 LTS.
const (
	SuiteSid    = "sid"
	SuiteTrixie = "trixie"
)

// DefaultSuite and DefaultMirror are what DefaultSpec uses. DefaultMirror is a frozen
// snapshot whose sid Release file has expired, so DefaultSpec marks it SnapshotMirror.
const (
	DefaultSuite  = SuiteSid
	DefaultMirror = "http://deb.debian.org/debian"
)

// basePackages is what every root gets: the kernel toolchain (LLVM, Rust, bindgen), what
// kbuild needs, the kernel source, and what the guest needs (sshd, kmod, mount, ip).
// libelf1t64 is objtool's runtime library inside the guest; rsync lets users (and the sync
// benchmark) compare or copy trees over `kmodvm ssh`.
var basePackages = []string{
	"bc", "bindgen", "bison", "clang", "cpio", "flex", "gcc", "iproute2", "kmod",
	"libc6-dev", "libelf-dev", "libelf1t64", "libssl-dev", "linux-source", "lld", "llvm",
	"make", "mount", "openssh-server", "python3", "rsync", "rust-src", "rustc", "rustfmt", "xz-utils",
}

// Spec says which toolchain root to build.
type Spec struct {
	Suite    string   `json:"suite"`    // Debian suite: sid (default) or trixie
	Mirror   string   `json:"mirror"`   // Debian mirror URL
	Packages []string `json:"packages"` // extra packages on top of the base list
	Init     string   `json:"init"`     // InitTiny (default) or InitSystemd
	// SnapshotMirror says Mirror is a frozen snapshot: apt then accepts its Release files
	// after their Valid-Until date. A live mirror leaves it false, so that apt rejects a
	// stale or replayed Release file.
	SnapshotMirror bool `json:"snapshot_mirror"`
}

// DefaultSpec is sid from deb.debian.org (a frozen snapshot) with the tiny init.
func DefaultSpec() Spec {
	return Spec{Suite: DefaultSuite, Mirror: DefaultMirror, Init: InitTiny, SnapshotMirror: true}
}

// normalized fills empty fields with the defaults and trims the mirror's trailing slash, so
// that equivalent specs hash alike. An empty Mirror is DefaultMirror, a snapshot.
func (s Spec) normalized() Spec {
	if s.Suite == "" {
		s.Suite = DefaultSuite
	}
	if s.Mirror == "" {
		s.Mirror = DefaultMirror
		s.SnapshotMirror = true
	}
	s.Mirror = strings.TrimRight(s.Mirror, "/")
	if s.Init == "" {
		s.Init = InitTiny
	}
	s.Packages = s.PackageList()
	return s
}

// PackageList is the base list, plus systemd-sysv for the systemd init, plus the extras:
// sorted, without duplicates.
func (s Spec) PackageList() []string {
	list := slices.Clone(basePackages)
	if s.Init == InitSystemd {
		list = append(list, "systemd-sysv")
	}
	for _, p := range s.Packages {
		if p = strings.TrimSpace(p); p != "" {
			list = append(list, p)
		}
	}
	slices.Sort(list)
	return slices.Compact(list)
}

// Hash identifies the root the spec builds: sha256 over a canonical encoding of the
// (normalized) suite, mirror, package list, init, whether apt checks Valid-Until, and
// FormatVersion. Every root built before SnapshotMirror existed skipped the check: a
// snapshot spec encodes as before, so its hash (and its cached root) stays.
func (s Spec) Hash() string {
	return s.hash(FormatVersion)
}

func (s Spec) hash(version int) string {
	n := s.normalized()
	canonical, err := json.Marshal(struct {
		Format   int      `json:"format"`
		Suite    string   `json:"suite"`
		Mirror   string   `json:"mirror"`
		Packages []string `json:"packages"`
		Init     string   `json:"init"`
		// CheckValidUntil is omitted when false, which keeps snapshot hashes as they were.
		CheckValidUntil bool `json:"check_valid_until,omitempty"`
	}{version, n.Suite, n.Mirror, n.Packages, n.Init, !n.SnapshotMirror})
	if err != nil {
		panic(err) // strings only: cannot fail
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}

var (
	suiteRE   = regexp.MustCompile(`^[a-z][a-z0-9.-]*$`)
	packageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?$`)
	mirrorRE  = regexp.MustCompile(`^(https?|file)://[^\s,]+$`)
)

// Validate reports the first thing wrong with the spec, as a message a user can act on.
func (s Spec) Validate() error {
	n := s.normalized()
	if !suiteRE.MatchString(n.Suite) {
		return fmt.Errorf("image suite %q is not a Debian suite name; hint: set image.suite in kmodvm.yaml to sid or trixie", n.Suite)
	}
	if !mirrorRE.MatchString(n.Mirror) {
		return fmt.Errorf("image mirror %q is not an http(s) URL; hint: set image.mirror in kmodvm.yaml, e.g. %s", n.Mirror, DefaultMirror)
	}
	if n.Init != InitTiny && n.Init != InitSystemd {
		return fmt.Errorf("image init %q is unknown: use %q (default) or %q; hint: image.init in kmodvm.yaml", n.Init, InitTiny, InitSystemd)
	}
	for _, p := range n.Packages {
		if !packageRE.MatchString(p) {
			return fmt.Errorf("image package %q is not a Debian package name; hint: fix image.packages in kmodvm.yaml", p)
		}
	}
	return nil
}

// shortHash is the first 12 hex digits, for messages.
func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
