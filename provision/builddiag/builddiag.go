// Package builddiag explains the errors of a module build that a person cannot act on from
// the compiler's words alone: for an item the kernel's config leaves out (rustc's "found an
// item that was configured out", pointing at a `#[cfg(CONFIG_X)]` in the kernel crate) it
// says which option it takes, whether this kernel has it, what else it depends on, and the
// kmodvm.yaml lines that turn it on.
package builddiag

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kmodvm/kmodvm/provision/kconfig"
)

// Paths points a path a build printed at the host file it names (ktrace.Mapper does).
type Paths interface {
	Map(path string) (string, bool)
}

// KindConfiguredOut is the Kind of a hint about an item the kernel's config leaves out.
const KindConfiguredOut = "configured-out"

// Hint is what kmodvm makes of one error of a module build.
type Hint struct {
	Kind string `json:"kind"` // KindConfiguredOut
	// At is where the item is, as the build output names it once its paths are mapped:
	// "path:line:col", a host path when the file is on the host.
	At string `json:"at"`
	// Cfg is the item's cfg predicate, its #[cfg] attributes joined: "CONFIG_CONFIGFS_FS".
	Cfg string `json:"cfg"`
	// Needs are the kernel options that make Cfg hold, each as this kernel has it.
	Needs []Setting `json:"needs"`
	// Fragments are the kernel.fragments lines that set Needs: ["CONFIG_CONFIGFS_FS=y"].
	Fragments []string `json:"fragments"`
	// Config is the kmodvm.yaml lines that add Fragments.
	Config string `json:"config"`
	// Text is the hint as the build output ends with it: "hint: ...", several lines.
	Text string `json:"text"`
}

// Setting is one kernel option a hint asks for.
type Setting struct {
	Symbol string `json:"symbol"` // "CONFIG_CONFIGFS_FS"
	Want   string `json:"want"`   // y, m, n, or the value a cfg compares with
	// Value is what this kernel has: y, m, n (not set), a value as its .config writes it;
	// "" when its config could not be read.
	Value string `json:"value"`
	// Blocker says why a fragment line alone would not set it, from the kernel's Kconfig:
	// "depends on: PWM [=n] (add `CONFIG_PWM=y` too)", "has no prompt, ...", and what would
	// still stop it once those fixes are made; omitted when nothing would.
	Blocker string `json:"blocker,omitempty"`
	// Fixes are assignments that would meet a dependency Blocker names, as "`CONFIG_A=y`"
	// or "`CONFIG_A=y` or `CONFIG_B=y`" (any one), one per unmet dependency.
	Fixes []string `json:"fixes,omitempty"`
}

// Hints reads a module build's output (out, its paths already mapped to the host or not)
// and returns a hint for each distinct cfg that left out an item the module uses. paths
// finds the kernel's sources when the output does not show the #[cfg] line; kdir is the
// kernel's staged build tree on the host, whose .config and Kconfig files say what the
// kernel has and what an option depends on.
func Hints(out string, paths Paths, kdir string) []Hint {
	notes := configuredOut(out)
	if len(notes) == 0 {
		return nil
	}
	k := loadKernel(kdir)
	var hints []Hint
	seen := map[string]bool{}
	for _, n := range notes {
		attrs := n.attrs
		if len(attrs) == 0 {
			attrs = cfgsAt(sourceFile(n.path, paths), n.line)
		}
		e := joinCfgs(attrs)
		if e == nil || seen[e.String()] {
			continue
		}
		seen[e.String()] = true
		o := need(e, false, k.values())
		if len(o.needs) == 0 {
			continue // it holds, or no kernel option decides it
		}
		hints = append(hints, k.hint(n.at, e, o.needs))
	}
	return hints
}

// kernelInfo is what a hint knows of the kernel: its config (nil with err when it could
// not be read) and its Kconfig index (nil when there is none).
type kernelInfo struct {
	config *kconfig.Config
	err    error
	kc     *kconfig.Kconfig
}

func loadKernel(kdir string) kernelInfo {
	var k kernelInfo
	f, err := os.Open(filepath.Join(kdir, ".config"))
	if err != nil {
		k.err = fmt.Errorf("read the kernel's config: %w", err)
		return k
	}
	defer f.Close()
	if k.config, err = kconfig.Parse(f); err != nil {
		k.err = fmt.Errorf("read the kernel's config %s: %w", f.Name(), err)
		return k
	}
	// Without its Kconfig index a hint names the options, not their dependencies.
	k.kc, _ = kconfig.LoadKconfig(kdir)
	return k
}

func (k kernelInfo) values() values {
	if k.config == nil {
		return nil
	}
	return func(sym string) (string, bool) { return k.config.Value(sym) }
}

// hint explains the item at at, left out by e, which holds once needs are set.
func (k kernelInfo) hint(at string, e *pred, needs []Setting) Hint {
	h := Hint{Kind: KindConfiguredOut, At: at, Cfg: e.String()}
	var have, quoted []string
	for _, s := range needs {
		if k.config != nil {
			s.Blocker, s.Fixes = k.blocker(s.Symbol, fragmentValue(s.Want))
		}
		h.Needs = append(h.Needs, s)
		line := kconfig.Assignment(s.Symbol, fragmentValue(s.Want))
		h.Fragments = append(h.Fragments, line)
		quoted = append(quoted, strconv.Quote(line))
		have = append(have, describe(s))
	}
	h.Config = "kernel:\n  fragments: [" + strings.Join(quoted, ", ") + "]\n"

	var b strings.Builder
	fmt.Fprintf(&b, "hint: the item at %s is configured out of this kernel: it is built only under #[cfg(%s)]", at, h.Cfg)
	if k.config == nil {
		fmt.Fprintf(&b, ", and kmodvm could not tell what this kernel has (%v).\n", k.err)
	} else {
		fmt.Fprintf(&b, ", and this kernel has %s.\n", strings.Join(have, ", "))
	}
	b.WriteString("  To build it in, add to kernel.fragments in kmodvm.yaml:\n")
	for l := range strings.Lines(h.Config) {
		b.WriteString("    " + l)
	}
	for _, s := range h.Needs {
		if s.Blocker == "" {
			continue
		}
		fmt.Fprintf(&b, "  A fragment line alone does not set %s — %s.\n", s.Symbol, s.Blocker)
	}
	b.WriteString("  That makes a kernel variant, built once (a kernel rebuild); a VM keeps the kernel it was made with until it is made anew (`kmodvm destroy`, then `kmodvm up`).")
	h.Text = b.String()
	return h
}

// maxBlockers bounds how many blockers of one option blocker follows through.
const maxBlockers = 3

// blocker says what would keep a fragment line sym=want from taking effect, and the
// assignments that would meet its dependencies. When those are certain (one way to meet
// each), it says what would still block it once they are made too: an option that depends
// on another and has no prompt needs a select besides.
func (k kernelInfo) blocker(sym, want string) (string, []string) {
	cfg := k.config
	var reasons, fixes []string
	for range maxBlockers {
		reason, fs := kconfig.Blocker(sym, want, cfg, k.kc)
		if reason == "" {
			break
		}
		if len(fs) > 0 {
			reason += " (add " + strings.Join(fs, " and ") + " too)"
		}
		reasons = append(reasons, reason)
		fixes = append(fixes, fs...)
		next, ok := withFixes(cfg, fs)
		if !ok {
			break
		}
		cfg = next
	}
	return strings.Join(reasons, "; once that is met, it "), fixes
}

// withFixes returns cfg with fixes made, each "`CONFIG_A=y`"; false when there is none, or
// one offers a choice ("`CONFIG_A=y` or `CONFIG_B=y`").
func withFixes(cfg *kconfig.Config, fixes []string) (*kconfig.Config, bool) {
	if len(fixes) == 0 {
		return nil, false
	}
	var lines strings.Builder
	for _, f := range fixes {
		if strings.Contains(f, " or ") {
			return nil, false
		}
		lines.WriteString(strings.Trim(f, "`") + "\n")
	}
	add, err := kconfig.Parse(strings.NewReader(lines.String()))
	if err != nil {
		return nil, false
	}
	next := cfg.Clone()
	for _, sym := range add.Symbols() {
		v, _ := add.Value(sym)
		next.Set(sym, v)
	}
	return next, true
}

// describe says how this kernel has s: "CONFIG_X off", "CONFIG_X=m".
func describe(s Setting) string {
	if s.Value == "n" {
		return s.Symbol + " off"
	}
	return s.Symbol + "=" + s.Value
}

// sourceFile is the host file a printed path names: the one paths maps it to, or the path
// itself when it is a host path already (an absolute path that exists; a relative one
// would be relative to kmodvm's working directory, which is not the build's). "" when
// there is none.
func sourceFile(p string, paths Paths) string {
	if host, ok := paths.Map(p); ok {
		return host
	}
	if st, err := os.Stat(p); filepath.IsAbs(p) && err == nil && st.Mode().IsRegular() {
		return p
	}
	return ""
}

// joinCfgs parses the predicates of an item's #[cfg] attributes, all of which must hold;
// nil when there is none it can parse.
func joinCfgs(attrs []string) *pred {
	var ps []*pred
	for _, a := range attrs {
		if e, err := parsePred(a); err == nil {
			ps = append(ps, e)
		}
	}
	switch len(ps) {
	case 0:
		return nil
	case 1:
		return ps[0]
	}
	return &pred{op: "all", args: ps}
}
