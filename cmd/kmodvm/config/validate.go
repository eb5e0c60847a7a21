package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/kmodvm/kmodvm/images"
)

// FieldError is one invalid setting, named by its dotted key ("vm.accel",
// "kernel.fragments[1]"). Validate returns these, joined; Load adds the file and line.
type FieldError struct {
	Field string
	Msg   string // one paragraph, may end with "; hint: ..." (Load adds one when it does not)
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// SourceKind says what Kernel.Source names.
type SourceKind int

const (
	SourcePackage SourceKind = iota // the suite's linux-source package
	SourceTree                      // a local kernel tree directory
	SourceTarball                   // a local tarball file
	SourceURL                       // an http(s) URL of a tarball
)

var tarballSuffixes = []string{".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar.zst", ".tzst"}

// SourceKind classifies k.Source: "package", an http(s) URL, a path ending in a tarball
// suffix (.tar, .tar.gz, .tgz, .tar.xz, .txz, .tar.bz2, .tbz2, .tar.zst, .tzst), or a tree.
func (k Kernel) SourceKind() SourceKind {
	s := k.Source
	switch {
	case s == SourcePackageName:
		return SourcePackage
	case strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://"):
		return SourceURL
	}
	for _, suf := range tarballSuffixes {
		if strings.HasSuffix(s, suf) {
			return SourceTarball
		}
	}
	return SourceTree
}

// FragmentKind says what a kernel.fragments entry is.
type FragmentKind int

const (
	FragmentLine   FragmentKind = iota // "CONFIG_X=y" or "# CONFIG_X is not set"
	FragmentInTree                     // a name without "/" ending in ".config", e.g. "kvm_guest.config"
	FragmentFile                       // anything else: a file path ("./debug.config")
)

var inTreeName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.+-]*\.config$`)

// ClassifyFragment says whether s is a config line, an in-tree fragment name or a file path.
// A file in the project dir is written with a "/" ("./my.config") to tell it from an in-tree name.
func ClassifyFragment(s string) FragmentKind {
	switch {
	case strings.HasPrefix(s, "CONFIG_") || strings.HasPrefix(s, "# CONFIG_") || strings.HasPrefix(s, "#CONFIG_"):
		return FragmentLine
	case inTreeName.MatchString(s):
		return FragmentInTree
	}
	return FragmentFile
}

var (
	nameRe      = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)
	packageRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	sha256Re    = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	paramNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)
	configSetRe = regexp.MustCompile(`^CONFIG_[A-Za-z0-9_]+=(y|m|n|-?[0-9]+|0x[0-9a-fA-F]+|"([^"\\]|\\.)*")$`)
	configNotRe = regexp.MustCompile(`^# CONFIG_[A-Za-z0-9_]+ is not set$`)
	offRe       = regexp.MustCompile(`^(?:# CONFIG_([A-Za-z0-9_]+) is not set|CONFIG_([A-Za-z0-9_]+)=n)$`)
)

// Validate checks every setting and returns all problems found, joined, each a *FieldError.
// It does not touch the file system. The CLI calls it again after flags override fields.
func (c Config) Validate() error {
	var v validator
	if !nameRe.MatchString(c.Name) {
		v.add("name", "%s is not a valid VM name; hint: use 1 to 40 lower-case letters, digits and dashes, starting with a letter or digit, such as \"kmodvm\" or \"rust-dev\"", quote(c.Name))
	}

	v.between("vm.memory", c.VM.Memory, 256, 65536, " MiB")
	v.between("vm.cpus", c.VM.CPUs, 1, 64, "")
	v.between("vm.crash_retention", c.VM.CrashRetention, 0, 1000, " bundles")
	v.oneOf("vm.accel", c.VM.Accel, AccelAuto, AccelKVM, AccelTCG)
	if c.VM.Port != 0 && (c.VM.Port < 1024 || c.VM.Port > 65535) {
		v.add("vm.port", "%d is not 0 (pick a free port) or a port in 1024..65535; hint: use a free port such as 2222, or 0", c.VM.Port)
	}
	if msg := checkURI(c.VM.URI); msg != "" {
		v.add("vm.uri", "%s", msg)
	}

	v.oneOf("image.suite", c.Image.Suite, SuiteSid, SuiteTrixie)
	if u, err := url.Parse(c.Image.Mirror); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.add("image.mirror", "%s is not an http(s) URL of a Debian mirror, such as %s", quote(c.Image.Mirror), quote(images.DefaultMirror))
	}
	for i, p := range c.Image.Packages {
		if !packageRe.MatchString(p) {
			v.add(fmt.Sprintf("image.packages[%d]", i), "%s is not a Debian package name; hint: use lower-case letters, digits and + . -, at least 2 characters, starting with a letter or digit", quote(p))
		}
	}
	v.oneOf("image.init", c.Image.Init, InitTiny, InitSystemd)

	v.kernel(c.Kernel)

	v.path("module.dir", c.Module.Dir)
	for i, p := range c.Module.Params {
		if msg := checkParam(p); msg != "" {
			v.add(fmt.Sprintf("module.params[%d]", i), "%s", msg)
		}
	}
	v.oneOf("module.build", c.Module.Build, BuildAuto, BuildGuest, BuildHost)
	if c.Module.Timeout <= 0 {
		v.add("module.timeout", "%s is not a positive duration; hint: use one such as 10m or 90s", quote(c.Module.Timeout.String()))
	}
	return v.err()
}

func (v *validator) kernel(k Kernel) {
	kind := k.SourceKind()
	if k.Source == "" {
		v.add("kernel.source", "is empty; hint: use \"package\", a kernel tree path, or a tarball path or http(s) URL")
	} else if kind == SourceTree || kind == SourceTarball {
		v.path("kernel.source", k.Source)
	} else if kind == SourceURL {
		if u, err := url.Parse(k.Source); err != nil || u.Host == "" {
			v.add("kernel.source", "%s is not a valid URL", quote(k.Source))
		}
	}
	tarball := kind == SourceTarball || kind == SourceURL
	switch {
	case tarball && k.SHA256 == "":
		v.add("kernel.source", "%s is a tarball, so kernel.sha256 must hold its SHA-256 digest (64 hex digits); hint: run sha256sum on the tarball and put the digest in kernel.sha256", quote(k.Source))
	case tarball && !sha256Re.MatchString(k.SHA256):
		v.add("kernel.sha256", "%s is not a SHA-256 digest: it must be 64 hex digits; hint: run sha256sum on the tarball and put the digest in kernel.sha256", quote(k.SHA256))
	case !tarball && k.SHA256 != "":
		v.add("kernel.sha256", "is set but kernel.source %s is not a tarball; hint: remove kernel.sha256, or point kernel.source at a tarball (.tar.xz, .tar.gz, ...) or an http(s) URL", quote(k.Source))
	}
	v.oneOf("kernel.base", k.Base, BaseSmall, BaseDefconfig)
	for i, f := range k.Fragments {
		field := fmt.Sprintf("kernel.fragments[%d]", i)
		switch ClassifyFragment(f) {
		case FragmentLine:
			if !configSetRe.MatchString(f) && !configNotRe.MatchString(f) {
				v.add(field, "%s is not a kernel config line; hint: write it as CONFIG_NAME=y (or =m, =n, a number, a \"quoted string\") or as \"# CONFIG_NAME is not set\"", quote(f))
			} else if sym := turnedOff(f); k.DebugOn() && debugNeeds[sym] {
				// The user's fragments win over kmodvm's, and verification checks the
				// final config against the winner: only here is the contradiction seen.
				v.add(field, "turns off CONFIG_%s, which the debug kernel (kernel.debug, on unless set to false) needs for debug information; hint: remove the line, or set kernel.debug: false", sym)
			}
		case FragmentFile:
			v.path(field, f)
		}
	}
	for i, p := range k.Patches {
		v.path(fmt.Sprintf("kernel.patches[%d]", i), p)
	}
	for i, h := range k.Bindings {
		if msg := checkHeader(h); msg != "" {
			v.add(fmt.Sprintf("kernel.bindings[%d]", i), "%s", msg)
		}
	}
	if k.Jobs < 0 || k.Jobs > 1024 {
		v.add("kernel.jobs", "%d is not 0 (one job per CPU) or a job count in 1..1024", k.Jobs)
	}
}

// headerRe is a header path as #include <...> names it: components of letters, digits and
// _ . + -, ending in .h.
var headerRe = regexp.MustCompile(`^([A-Za-z0-9_][A-Za-z0-9_.+-]*/)*[A-Za-z0-9_][A-Za-z0-9_.+-]*\.h$`)

// checkHeader checks one kernel.bindings header; it returns what is wrong, or "".
func checkHeader(h string) string {
	shape := "write it as #include <...> names it, relative to the kernel's include/, such as \"linux/iio/iio.h\""
	switch {
	case strings.HasPrefix(h, "<") || strings.HasPrefix(h, "#include") || strings.HasPrefix(h, "\""):
		return fmt.Sprintf("%s is not a header path; hint: %s, without #include, <> or quotes", quote(h), shape)
	case strings.HasPrefix(h, "include/") || strings.HasPrefix(h, "/"):
		return fmt.Sprintf("%s is not a header path as #include names it; hint: %s (leave out include/)", quote(h), shape)
	case !headerRe.MatchString(h): // also refuses ".." components: none starts with "."
		return fmt.Sprintf("%s is not a header path; hint: %s", quote(h), shape)
	}
	return ""
}

// checkURI accepts qemu:///system and qemu:///session, locally or through a remote transport
// (qemu+ssh://host/system); it returns what is wrong, or "".
func checkURI(s string) string {
	bad := fmt.Sprintf("%s is not a libvirt QEMU URI; hint: use %s, %s or a remote one such as qemu+ssh://user@host/system", quote(s), URISystem, URISession)
	u, err := url.Parse(s)
	if err != nil {
		return bad
	}
	if u.Scheme != "qemu" && !strings.HasPrefix(u.Scheme, "qemu+") {
		return bad
	}
	if u.Path != "/system" && u.Path != "/session" {
		return bad
	}
	return ""
}

// checkParam checks one "name=value" module parameter; it returns what is wrong, or "".
func checkParam(p string) string {
	name, value, ok := strings.Cut(p, "=")
	switch {
	case !ok:
		return fmt.Sprintf("%s is not a module parameter: write it as name=value, such as \"debug=1\"", quote(p))
	case !paramNameRe.MatchString(name):
		return fmt.Sprintf("%s is not a module parameter name: use letters, digits, _ and ., starting with a letter or _", quote(name))
	case strings.ContainsRune(value, 0):
		// Any other byte reaches the module: a value with white space, newlines included, is
		// quoted for the kernel's parser (module.ParamWord).
		return fmt.Sprintf("the value of %s contains a NUL byte, which no command argument can carry", quote(name))
	}
	return ""
}

type validator struct{ errs []error }

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) between(field string, n, lo, hi int, unit string) {
	if n < lo || n > hi {
		v.add(field, "%d is not in %d..%d%s", n, lo, hi, unit)
	}
}

func (v *validator) oneOf(field, s string, allowed ...string) {
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	v.add(field, "%s is not one of %s", quote(s), strings.Join(allowed, ", "))
}

// path checks a file system path setting.
func (v *validator) path(field, p string) {
	switch {
	case p == "":
		v.add(field, "is empty; hint: give a path")
	case strings.ContainsAny(p, "\x00\n\r"):
		v.add(field, "%s contains a newline or NUL byte", quote(p))
	case strings.HasPrefix(p, "~"):
		v.add(field, "%s starts with \"~\", which kmodvm does not expand; hint: write the full path or one relative to kmodvm.yaml", quote(p))
	}
}

func (v *validator) err() error {
	if len(v.errs) == 0 {
		return nil
	}
	if len(v.errs) == 1 {
		return v.errs[0]
	}
	return errors.Join(v.errs...)
}

// debugNeeds are the options without which a kernel.debug kernel has no debug information
// at all (the "Debug information" choice depends on DEBUG_KERNEL).
var debugNeeds = map[string]bool{"DEBUG_KERNEL": true, "DEBUG_INFO": true}

// turnedOff is the symbol a config line turns off ("# CONFIG_X is not set", CONFIG_X=n),
// without CONFIG_; "" for any other line.
func turnedOff(line string) string {
	m := offRe.FindStringSubmatch(line)
	if m == nil {
		return ""
	}
	return m[1] + m[2]
}
