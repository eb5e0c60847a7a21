package kernel

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/kmodvm/kmodvm/provision/kconfig"
)

// Bases.
const (
	BaseSmall     = "small"     // one Kconfig pass over tinyconfig's fragments + kvm_guest + ours
	BaseDefconfig = "defconfig" // x86_64_defconfig + kvm_guest + ours
)

//go:embed fragments/essentials.config
var essentialsConfig []byte

//go:embed fragments/rust.config
var rustConfig []byte

//go:embed fragments/kunit.config
var kunitConfig []byte

// debugConfig is the fragment of the debug variant (ConfigSpec.Debug): line tables and the
// ORC unwinder.
//
//go:embed fragments/debug.config
var debugConfig []byte

// kunitSince are the KUnit fragment's options older kernels lack: Linux 6.12 (trixie's) has
// no KUNIT_AUTORUN_ENABLED, and there a module's suites always run at insmod. Requested where
// lib/kunit/Kconfig defines them, left out where it does not.
var kunitSince = []string{"KUNIT_AUTORUN_ENABLED"}

const kunitKconfig = "lib/kunit/Kconfig"

// dropUndefined unsets each of syms that the Kconfig file rel of tree does not define.
func dropUndefined(c *kconfig.Config, tree, rel string, syms []string) error {
	data, err := os.ReadFile(filepath.Join(tree, rel))
	if err != nil {
		return fmt.Errorf("read %s: %w; hint: is %s a complete kernel tree?", rel, err, tree)
	}
	for _, sym := range syms {
		if !regexp.MustCompile(`(?m)^\s*config\s+` + regexp.QuoteMeta(sym) + `\s*$`).Match(data) {
			c.Unset(sym)
		}
	}
	return nil
}

// ConfigSpec is what the user asks of the kernel config.
type ConfigSpec struct {
	Base      string   // small | defconfig
	Fragments []string // inline lines, in-tree names or files (kmodvm.yaml kernel.fragments)
	BaseDir   string   // relative fragment files resolve against it
	// Debug selects the debug variant (kmodvm.yaml kernel.debug): fragments/debug.config
	// is applied after kmodvm's other fragments and before the user's, and the build keeps
	// vmlinux for symbolizing traces.
	Debug bool
}

// ConfigPlan is a resolved config request: the layers in the order they apply and the
// symbols whose final values must be verified.
type ConfigPlan struct {
	Base      string
	Debug     bool            // the debug variant: its layer is among Layers
	BaseLayer []kconfig.Layer // what the base is made of (small: tiny fragments + kvm_guest)
	Layers    []kconfig.Layer // ours and the user's, applied on top, later wins
	Merged    *kconfig.Config // base fragments + layers (small) or layers only (defconfig)
	Requested *kconfig.Config // every symbol the layers set, with its merged value
	InputHash string          // identity of the request (for the cache key and LOCALVERSION)
}

// relPaths of tinyconfig's fragments and kvm_guest.config inside a tree.
var (
	tinyFragments = []string{"kernel/configs/tiny-base.config", "kernel/configs/tiny.config", "arch/x86/configs/tiny.config"}
	kvmGuest      = "kernel/configs/kvm_guest.config"
)

// PlanConfig reads the base fragments from the kernel tree and resolves the user's
// fragments. sourceID makes LOCALVERSION distinct per source and config, so a module built
// for one kmodvm kernel is never loaded into another (vermagic alone would not tell).
func PlanConfig(spec ConfigSpec, tree, sourceID string) (*ConfigPlan, error) {
	base := spec.Base
	if base == "" {
		base = BaseSmall
	}
	if base != BaseSmall && base != BaseDefconfig {
		return nil, fmt.Errorf("kernel base %q is not one of small, defconfig; hint: fix kernel.base in kmodvm.yaml", base)
	}
	plan := &ConfigPlan{Base: base, Debug: spec.Debug}
	var baseFiles []string
	if base == BaseSmall {
		baseFiles = append(baseFiles, tinyFragments...)
	}
	baseFiles = append(baseFiles, kvmGuest)
	for _, rel := range baseFiles {
		data, err := os.ReadFile(filepath.Join(tree, rel))
		if err != nil {
			return nil, fmt.Errorf("read base fragment %s: %w; hint: is %s a complete kernel tree?", rel, err, tree)
		}
		f, err := kconfig.ParseFragment(rel, data)
		if err != nil {
			return nil, err
		}
		plan.BaseLayer = append(plan.BaseLayer, kconfig.Layer{Name: rel, Fragments: []kconfig.Fragment{f}})
	}
	ess, err := kconfig.ParseFragment("kmodvm guest essentials", essentialsConfig)
	if err != nil {
		return nil, err
	}
	rust, err := kconfig.ParseFragment("kmodvm Rust fragment", rustConfig)
	if err != nil {
		return nil, err
	}
	kunit, err := kconfig.ParseFragment("kmodvm KUnit fragment", kunitConfig)
	if err != nil {
		return nil, err
	}
	if err := dropUndefined(kunit.Config, tree, kunitKconfig, kunitSince); err != nil {
		return nil, err
	}
	var user []kconfig.Fragment
	for _, s := range spec.Fragments {
		f, err := kconfig.ResolveFragment(s, tree, spec.BaseDir)
		if err != nil {
			return nil, err
		}
		user = append(user, f)
	}
	layers := []kconfig.Layer{
		{Name: "guest essentials", Fragments: []kconfig.Fragment{ess}},
		{Name: "rust", Fragments: []kconfig.Fragment{rust}},
		{Name: "kunit", Fragments: []kconfig.Fragment{kunit}},
	}
	if spec.Debug {
		dbg, err := kconfig.ParseFragment("kmodvm debug fragment", debugConfig)
		if err != nil {
			return nil, err
		}
		layers = append(layers, kconfig.Layer{Name: "debug (kernel.debug)", Fragments: []kconfig.Fragment{dbg}})
	}
	if len(user) > 0 {
		layers = append(layers, kconfig.Layer{Name: "kmodvm.yaml kernel.fragments", Fragments: user})
	}
	// The identity of everything requested, before LOCALVERSION is derived from it.
	pre, err := kconfig.Merge(append(append([]kconfig.Layer{}, plan.BaseLayer...), layers...)...)
	if err != nil {
		return nil, err
	}
	plan.InputHash = shortHash(base, sourceID, string(pre.Bytes()))
	lv := kconfig.New()
	lv.Set("LOCALVERSION", `"-kmodvm-`+plan.InputHash[:8]+`"`)
	layers = append(layers, kconfig.Layer{Name: "kmodvm release", Fragments: []kconfig.Fragment{{Name: "kmodvm release", Config: lv}}})
	plan.Layers = layers

	all := layers
	if base == BaseSmall {
		all = append(append([]kconfig.Layer{}, plan.BaseLayer...), layers...)
	}
	if plan.Merged, err = kconfig.Merge(all...); err != nil {
		return nil, err
	}
	plan.Requested = kconfig.New()
	for _, l := range layers {
		for _, f := range l.Fragments {
			for _, sym := range f.Config.Symbols() {
				v, _ := plan.Merged.Value(sym)
				plan.Requested.Set(sym, v)
			}
		}
	}
	return plan, nil
}

// kconfigRun runs one Kconfig target in the tree with KCONFIG_CONFIG pointing at out (a
// path relative to the tree), so checking a config never disturbs the build's .config.
func (b *Builder) kconfigRun(ctx context.Context, tree, target, out, allconfig string) error {
	env := []string{"KCONFIG_CONFIG=" + out}
	if allconfig != "" {
		env = append(env, "KCONFIG_ALLCONFIG="+allconfig)
	}
	return b.make(ctx, tree, nil, env, target)
}

// GenerateConfig runs Kconfig for the plan and writes the final config to out (relative to
// the tree). It returns the final config. It does not verify it.
func (b *Builder) GenerateConfig(ctx context.Context, plan *ConfigPlan, tree, out string) (*kconfig.Config, error) {
	switch plan.Base {
	case BaseSmall:
		in := ".kmodvm-allconfig"
		if err := os.WriteFile(filepath.Join(tree, in), plan.Merged.Bytes(), 0o644); err != nil {
			return nil, err
		}
		if err := b.kconfigRun(ctx, tree, "allnoconfig", out, in); err != nil {
			return nil, fmt.Errorf("kernel config (allnoconfig): %w", err)
		}
	default:
		if err := b.kconfigRun(ctx, tree, "x86_64_defconfig", out, ""); err != nil {
			return nil, fmt.Errorf("kernel config (x86_64_defconfig): %w", err)
		}
		def, err := readConfig(filepath.Join(tree, out))
		if err != nil {
			return nil, err
		}
		layers := append([]kconfig.Layer{{Name: "x86_64_defconfig", Fragments: []kconfig.Fragment{{Name: "x86_64_defconfig", Config: def}}}}, plan.BaseLayer...)
		merged, err := kconfig.Merge(append(layers, plan.Layers...)...)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(tree, out), merged.Bytes(), 0o644); err != nil {
			return nil, err
		}
		if err := b.kconfigRun(ctx, tree, "olddefconfig", out, ""); err != nil {
			return nil, fmt.Errorf("kernel config (olddefconfig): %w", err)
		}
	}
	return readConfig(filepath.Join(tree, out))
}

// BaseConfig runs Kconfig for the base alone (for `kernel config`'s difference).
func (b *Builder) BaseConfig(ctx context.Context, plan *ConfigPlan, tree string) (*kconfig.Config, error) {
	out := ".kmodvm-base.config"
	if plan.Base == BaseSmall {
		merged, err := kconfig.Merge(plan.BaseLayer...)
		if err != nil {
			return nil, err
		}
		in := ".kmodvm-base-allconfig"
		if err := os.WriteFile(filepath.Join(tree, in), merged.Bytes(), 0o644); err != nil {
			return nil, err
		}
		if err := b.kconfigRun(ctx, tree, "allnoconfig", out, in); err != nil {
			return nil, fmt.Errorf("base kernel config: %w", err)
		}
	} else if err := b.kconfigRun(ctx, tree, "x86_64_defconfig", out, ""); err != nil {
		return nil, fmt.Errorf("base kernel config: %w", err)
	}
	return readConfig(filepath.Join(tree, out))
}

// loadKconfig indexes the tree's Kconfig files once per build, for both the precheck and
// the verification.
func loadKconfig(tree string) (*kconfig.Kconfig, error) {
	kc, err := kconfig.LoadKconfig(tree)
	if err != nil {
		return nil, fmt.Errorf("read Kconfig files of %s: %w", tree, err)
	}
	return kc, nil
}

// verify checks the final config against the plan.
func verify(plan *ConfigPlan, final *kconfig.Config, kc *kconfig.Kconfig) kconfig.Report {
	rep := kconfig.Verify(plan.Requested, final, kc)
	rep.Step = kconfigStep(plan.Base)
	return rep
}

func kconfigStep(base string) string {
	if base == BaseSmall {
		return "make allnoconfig (KCONFIG_ALLCONFIG)"
	}
	return "make olddefconfig"
}

// ConfigError is a kernel config the user asked for that cannot work: an unknown or
// misspelled option, a conflict, an option Kconfig dropped. The CLI exits 2 for it.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func configError(err error) error {
	if err == nil {
		return nil
	}
	return &ConfigError{Err: err}
}

// Precheck catches what needs no Kconfig run (10-30 s): unknown symbols (with the nearest
// existing ones), symbols of another architecture, m on a bool.
func Precheck(plan *ConfigPlan, kc *kconfig.Kconfig) error {
	rep := kconfig.Check(plan.Requested, kc)
	rep.Step = kconfigStep(plan.Base)
	return configError(rep.Err())
}

// VerifyError is the hard error for a config that failed verification.
func (b *Builder) verifyError(ctx context.Context, tree string, rep kconfig.Report) error {
	err := rep.Err()
	if err == nil {
		return nil
	}
	for _, p := range rep.Problems {
		if p.Symbol == "RUST" || p.Symbol == "CONFIG_RUST" {
			out, _ := b.rustAvailable(ctx, tree)
			return configError(fmt.Errorf("%w\n`make LLVM=1 rustavailable` says:\n%s", err, indent(out)))
		}
	}
	return configError(err)
}

func readConfig(path string) (*kconfig.Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := kconfig.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return c, nil
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
