package kernel

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/images/ondisk"
	"github.com/kmodvm/kmodvm/provision/bindindex"
	"github.com/kmodvm/kmodvm/provision/kconfig"
)

// GuestTree is the absolute path of the kernel build tree, identical in the toolchain root
// on the host (bind mount) and in the guest, so out-of-tree module builds see the same paths
// and produce the same .ko in both places.
const GuestTree = "/usr/src/kmodvm/linux"

// recipe is bumped whenever the way a kernel is built or staged changes.
const recipe = "kernel-v4" // v4: entries keep the Rust sources (kmodvm ide); v3: the bindings and their index (kmodvm bindings)

// Root is the toolchain root the kernel is built in (images.Root satisfies it).
type Root interface {
	Command(ctx context.Context, opt images.RunOptions, argv ...string) *exec.Cmd
	Versions(ctx context.Context) (map[string]string, error)
}

// Progress is what a long build reports.
type Progress struct {
	Phase   string // "config", "build", "install", "stage"
	Step    int    // make steps seen so far
	Total   int    // expected steps (from the previous build of this tree; 0 = unknown)
	Current string // e.g. "CC kernel/fork.o"
	Elapsed time.Duration
}

// Builder builds kernels for one toolchain root.
type Builder struct {
	Root     Root
	RootHash string
	Cache    string // the kernels cache directory
	Jobs     int
	Log      *slog.Logger
	Progress func(Progress) // may be nil
}

// Request is one kernel to build.
type Request struct {
	Source Source
	Config ConfigSpec
	// Patches are patch files (kmodvm.yaml kernel.patches; relative paths resolve against
	// Config.BaseDir) applied in order to the sources before the Kconfig pass, in the build
	// tree only: a local tree source is never changed. Their content is part of the key.
	Patches []string
	// Bindings are headers ("linux/iio/iio.h", kmodvm.yaml kernel.bindings) included in
	// rust/bindings/bindings_helper.h for this kernel, so bindgen binds what they declare.
	Bindings []string
}

// Result is a built kernel in the cache.
type Result struct {
	Dir        string            `json:"-"`
	Key        string            `json:"key"`
	Release    string            `json:"release"`
	ConfigHash string            `json:"config_hash"`
	SourceID   string            `json:"source"`
	Base       string            `json:"base"`
	Debug      bool              `json:"debug"` // the debug variant: the entry keeps vmlinux
	Toolchain  map[string]string `json:"toolchain"`
	BuildTime  time.Duration     `json:"build_time_ns"`
	// Warnings are what the build found wrong but not fatal: a kernel.bindings header none
	// of whose items reached the Rust bindings, and why.
	Warnings []string `json:"warnings,omitempty"`
	Cached   bool     `json:"-"`
}

// Paths inside a result entry.
func (r *Result) Bzimage() string { return filepath.Join(r.Dir, bzimageName) }

// bzimageName is the kernel image's file name in a cached build.
const bzimageName = "bzImage"

// vmlinuxName is the unstripped kernel ELF's file name in a cached debug build.
const vmlinuxName = "vmlinux"

// Vmlinux is the unstripped kernel ELF with its debug information, for symbolizing traces:
// kept by debug variants only (it is hundreds of MB); "" for the others.
func (r *Result) Vmlinux() string {
	if !r.Debug {
		return ""
	}
	return filepath.Join(r.Dir, vmlinuxName)
}

// CachedBzimages lists the kernel image of every finished build in cache (a Builder's
// Cache), in no particular order.
func CachedBzimages(cache string) []string {
	found, _ := filepath.Glob(filepath.Join(cache, "builds", "*", bzimageName))
	var done []string
	for _, f := range found {
		if !strings.HasPrefix(filepath.Base(filepath.Dir(f)), ".") { // not a build under way
			done = append(done, f)
		}
	}
	return done
}
func (r *Result) ConfigFile() string { return filepath.Join(r.Dir, "config") }
func (r *Result) ModulesDir() string {
	return filepath.Join(r.Dir, "modules", "lib", "modules", r.Release)
}
func (r *Result) KDir() string { return filepath.Join(r.Dir, "kdir") }
func (r *Result) Log() string  { return filepath.Join(r.Dir, "build.log") }

// BindingsDir holds the kernel's generated Rust bindings, the kernel crate's sources and
// their index (provision/bindindex); an entry built before kmodvm kept them has none.
func (r *Result) BindingsDir() string { return filepath.Join(r.Dir, bindingsName) }

// bindingsName is the bindings directory's name in a cached build.
const bindingsName = "bindings"

// RustSrcDir holds the Rust sources of the kernel's rust/ and scripts/ directories, in tree
// layout (StageRustSources), for editors; an entry built before kmodvm kept them has none.
func (r *Result) RustSrcDir() string { return filepath.Join(r.Dir, rustSrcName) }

// rustSrcName is the Rust sources directory's name in a cached build.
const rustSrcName = "rust-src"

// SourceDirs are the host directories beside KDir that hold this kernel's files at their
// paths in its tree, in the order to look: the Rust sources of rust/ and scripts/
// (RustSrcDir), the kernel crate's kept with the bindings (BindingsDir: an entry older than
// RustSrcDir has those) and, last, the build tree the kernel was built in, when it still
// holds the sources this kernel was built from, unpatched at the moment. Only those that
// exist are listed. A compiler's diagnostics about a module, and trace frames, name these
// files.
func (r *Result) SourceDirs() []string {
	var dirs []string
	for _, d := range []string{r.RustSrcDir(), r.BindingsDir(), r.buildTree()} {
		if d == "" {
			continue
		}
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// buildTree finds the build tree this entry's kernel was built in, among its cache's trees:
// the one unpacked from the same source (a local tree's mirror is not marked, and left
// out), without a variant's patches in it now. A file this kernel's own patches changed is
// the unpatched one there; the Rust sources its entry keeps are patched. "" when there is
// none.
func (r *Result) buildTree() string {
	trees := filepath.Join(filepath.Dir(filepath.Dir(r.Dir)), "trees")
	marks, _ := filepath.Glob(filepath.Join(trees, "*", unpackedMarker))
	for _, m := range marks {
		tree := filepath.Dir(m)
		if data, err := os.ReadFile(m); err != nil || string(data) != r.SourceID {
			continue
		}
		if _, err := os.Stat(filepath.Join(tree, journalDir)); err == nil {
			continue
		}
		return tree
	}
	return ""
}

// Extras are the trees the guest disk gets from this kernel.
func (r *Result) Extras() []images.Tree {
	return []images.Tree{
		{Src: r.ModulesDir(), Dst: "/lib/modules/" + r.Release},
		{Src: r.KDir(), Dst: GuestTree},
	}
}

// prepared is a request's source, identified, with the build tree it builds in and, once
// planned, its config plan and cache key.
type prepared struct {
	src       Source
	tree      string // host path of the build tree
	slot      string
	sourceID  string
	tarball   string // package sources: the tarball inside the root
	plan      *ConfigPlan
	key       string
	toolchain map[string]string
	patches   []patchFile
	bindings  []string
	variant   []string // the key's parts for the patches and bindings
}

func (b *Builder) logger() *slog.Logger {
	if b.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return b.Log
}

func (b *Builder) report(p Progress) {
	if b.Progress != nil {
		b.Progress(p)
	}
}

// identify finds out what the source is, without touching its build tree.
func (b *Builder) identify(ctx context.Context, req Request) (*prepared, error) {
	p := &prepared{src: req.Source, bindings: req.Bindings}
	var err error
	if p.patches, err = readPatches(req.Patches, req.Config.BaseDir); err != nil {
		return nil, err
	}
	p.variant = variantParts(p.patches, p.bindings)
	var pkgName string
	switch req.Source.Kind {
	case SourcePackage:
		name, version, tb, err := packageSource(ctx, b.Root)
		if err != nil {
			return nil, err
		}
		pkgName, p.tarball, p.sourceID = name, tb, "package:"+name+"="+version
	case SourceTarball:
		p.sourceID = "tarball:" + req.Source.SHA256
	case SourceTree:
		id, err := treeIdentity(ctx, req.Source.Path)
		if err != nil {
			return nil, err
		}
		p.sourceID = "tree:" + req.Source.Path + "@" + id
	default:
		return nil, fmt.Errorf("unknown kernel source kind %q", req.Source.Kind)
	}
	p.slot = req.Source.treeSlot(b.RootHash, pkgName)
	if req.Config.Debug {
		// The debug variant compiles every object with other flags: in the plain kernels'
		// tree each switch between them would rebuild all of it, twice.
		p.slot += "-debug"
	}
	p.tree = filepath.Join(b.Cache, "trees", p.slot)
	return p, nil
}

// planFrom resolves the config request against the kernel sources in dir and computes the
// cache key.
func (b *Builder) planFrom(ctx context.Context, req Request, p *prepared, dir string) error {
	// The config is planned on the unpatched sources, as a cache hit reads them; the
	// patches and bindings count in LOCALVERSION, so a module built for a patched kernel is
	// never loaded into the same kernel without its patches.
	plan, err := PlanConfig(req.Config, dir, planID(p.sourceID, p.variant))
	if err != nil {
		return configError(err)
	}
	p.plan = plan
	if p.toolchain, err = b.toolchain(ctx); err != nil {
		return err
	}
	p.key = cacheKey(p.sourceID, plan, p.toolchain, p.variant...)
	return nil
}

// planID is what PlanConfig derives LOCALVERSION from: the source and, if any, the patches
// and bindings.
func planID(sourceID string, variant []string) string {
	return strings.Join(append([]string{sourceID}, variant...), "\x00")
}

// readySources returns a directory holding the request's kernel sources as they are now,
// readable without the tree's lock: a local tree itself, or a build tree completely
// unpacked from this very source (unpacking is the only writer of its sources). "" when
// the build tree must be filled first.
func (p *prepared) readySources() string {
	if p.src.Kind == SourceTree {
		return p.src.Path
	}
	if data, err := os.ReadFile(filepath.Join(p.tree, unpackedMarker)); err == nil && string(data) == p.sourceID {
		return p.tree
	}
	return ""
}

// useTree takes the build tree's lock (saying so when another kmodvm holds it), cleans up
// after a build in it that was interrupted, fills it from the source and plans req on it.
// The caller must call unlock.
func (b *Builder) useTree(ctx context.Context, req Request, p *prepared) (unlock func(), err error) {
	release, err := ondisk.Lock(ctx, filepath.Join(b.Cache, "trees", p.slot+".lock"), func() {
		b.report(Progress{Phase: "wait", Current: "waiting for another kmodvm using the kernel tree " + p.tree})
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	if err := b.recoverInterrupted(p.tree); err != nil {
		return nil, err
	}
	if err := restorePatched(p.tree); err != nil { // a build that was killed with patches in
		return nil, fmt.Errorf("take the patches of an earlier build out of the kernel tree %s: %w; hint: remove %s to start that tree afresh", p.tree, err, p.tree)
	}
	if err := b.unpack(ctx, p); err != nil {
		return nil, err
	}
	if err := touchRestored(p.tree); err != nil {
		return nil, err
	}
	if err := b.planFrom(ctx, req, p, p.tree); err != nil {
		return nil, err
	}
	return release, nil
}

// cacheKey identifies a built kernel: the build recipe, the source, everything requested of
// the config, the toolchain versions, and the variant. The final .config is a function of
// these, so a hit needs no Kconfig run. The debug variant is named apart from its config: a
// debug entry keeps vmlinux, and a plain request whose fragments happen to equal the debug
// one's must not be served one without it (nor the reverse). variant is the patches (by
// content) and the bindings, if any.
func cacheKey(sourceID string, plan *ConfigPlan, toolchain map[string]string, variant ...string) string {
	parts := []string{recipe, sourceID, plan.InputHash, string(plan.Merged.Bytes()), versionsString(toolchain)}
	if plan.Debug {
		parts = append(parts, debugVariant)
	}
	return shortHash(append(parts, variant...)...)
}

// applyVariant applies the request's patches and bindings to its build tree, before the
// Kconfig pass; restore takes them out again and must be called once the tree's build
// outputs are staged. A patch that does not apply leaves the tree restored.
func (b *Builder) applyVariant(p *prepared) (restore func(), err error) {
	restore = func() {
		if err := restorePatched(p.tree); err != nil { // the next use of the tree tries again
			b.logger().Warn("could not take the patches out of the kernel tree", "tree", p.tree, "err", err)
		}
	}
	if len(p.patches) == 0 && len(p.bindings) == 0 {
		return func() {}, nil
	}
	b.report(Progress{Phase: "patch", Current: fmt.Sprintf("applying %d patch files and %d binding headers", len(p.patches), len(p.bindings))})
	j, err := newJournal(p.tree)
	if err == nil {
		err = applyPatches(j, p.patches, p.sourceID)
	}
	if err == nil {
		err = addBindings(j, p.bindings)
	}
	if err != nil {
		if rerr := restorePatched(p.tree); rerr != nil {
			err = errors.Join(err, fmt.Errorf("restore the kernel tree: %w", rerr))
		}
		return nil, err
	}
	return restore, nil
}

// debugVariant is the debug variant's part of the cache keys; the plain variant adds none,
// so its keys are what they were before variants existed.
const debugVariant = "variant:debug"

func versionsString(v map[string]string) string {
	var s strings.Builder
	for _, k := range slices.Sorted(maps.Keys(v)) {
		fmt.Fprintf(&s, "%s=%s\n", k, v[k])
	}
	return s.String()
}

// toolchain returns the root's tool versions, remembered per root (a root never changes).
func (b *Builder) toolchain(ctx context.Context) (map[string]string, error) {
	path := filepath.Join(b.Cache, "toolchains", b.RootHash+".json")
	var v map[string]string
	if data, err := os.ReadFile(path); err == nil && json.Unmarshal(data, &v) == nil && len(v) > 0 {
		return v, nil
	}
	v, err := b.Root.Versions(ctx)
	if err != nil {
		return nil, fmt.Errorf("read toolchain versions: %w", err)
	}
	data, _ := json.MarshalIndent(v, "", "  ")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
		_ = ondisk.WriteFileAtomic(path, data, 0o644)
	}
	return v, nil
}

// unpackedMarker, in a build tree unpacked from a package or tarball, holds the identity of
// that source; it is written last, so a tree that has it is complete.
const unpackedMarker = ".kmodvm-source"

// unpack fills the build tree from the source once; a tree from another source identity
// (package upgraded, tarball changed) is replaced. A local tree is mirrored every time.
// The caller holds the tree's lock.
func (b *Builder) unpack(ctx context.Context, p *prepared) error {
	if p.src.Kind == SourceTree {
		if err := os.MkdirAll(p.tree, 0o755); err != nil {
			return err
		}
		return mirrorTree(ctx, p.src.Path, p.tree)
	}
	if p.readySources() != "" {
		return nil
	}
	b.report(Progress{Phase: "unpack", Current: "unpacking kernel source"})
	if err := os.RemoveAll(p.tree); err != nil {
		return err
	}
	if err := os.MkdirAll(p.tree, 0o755); err != nil {
		return err
	}
	binds := []images.Bind{{Host: p.tree, Guest: GuestTree}}
	inside := p.tarball
	if p.src.Kind == SourceTarball {
		local, err := fetchTarball(ctx, p.src, filepath.Join(b.Cache, "downloads"))
		if err != nil {
			return err
		}
		inside = "/tmp/kmodvm-source.tar"
		binds = append(binds, images.Bind{Host: local, Guest: inside, ReadOnly: true})
	}
	var out strings.Builder
	cmd := b.Root.Command(ctx, runOptions(binds, GuestTree, nil, &out, &out),
		"tar", "-xf", inside, "-C", GuestTree, "--strip-components=1", "--no-same-owner")
	if err := cmd.Run(); err != nil {
		os.RemoveAll(p.tree)
		return fmt.Errorf("unpack kernel source: %w\n%s", err, lastLines(out.String(), 10))
	}
	var sources []string
	err := walkSource(p.tree, func(rel string, _ os.FileInfo) error {
		sources = append(sources, rel)
		return nil
	})
	if err == nil {
		err = writeManifest(p.tree, sources)
	}
	if err != nil {
		return fmt.Errorf("list the unpacked kernel source: %w", err)
	}
	return os.WriteFile(filepath.Join(p.tree, unpackedMarker), []byte(p.sourceID), 0o644)
}

func (b *Builder) cached(key string) (*Result, error) {
	r, err := Open(filepath.Join(b.Cache, "builds", key))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return r, err
}

// Open reads the built kernel in the cache entry dir; an error wrapping os.ErrNotExist when
// dir holds none.
func Open(dir string) (*Result, error) {
	data, err := os.ReadFile(filepath.Join(dir, "info.json"))
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("read cached kernel %s: %w; hint: remove %s", filepath.Base(dir), err, dir)
	}
	r.Dir = dir
	r.Cached = true
	return &r, nil
}

// Lookup returns the cached kernel for req without building anything: nil when it is not
// built, or when that cannot be told without unpacking its sources (then it is not built
// either).
func (b *Builder) Lookup(ctx context.Context, req Request) (*Result, error) {
	p, err := b.identify(ctx, req)
	if err != nil {
		return nil, err
	}
	dir := p.readySources()
	if dir == "" {
		return nil, nil
	}
	if err := b.planFrom(ctx, req, p, dir); err != nil {
		return nil, err
	}
	return b.cached(p.key)
}

// ConfigCheck is what `kmodvm kernel config` prints.
type ConfigCheck struct {
	Plan    *ConfigPlan
	Final   *kconfig.Config
	Changes []kconfig.Change
	Report  kconfig.Report
	Tree    string
}

// CheckConfig generates the final config and verifies it, without building. For a built
// kernel the answer kept in its cache entry (checkFile) is returned at once; a check of a
// built kernel that had none keeps its answer there.
func (b *Builder) CheckConfig(ctx context.Context, req Request) (*ConfigCheck, error) {
	p, err := b.identify(ctx, req)
	if err != nil {
		return nil, err
	}
	if dir := p.readySources(); dir != "" {
		if err := b.planFrom(ctx, req, p, dir); err != nil {
			return nil, err
		}
		if chk := b.keptCheck(p); chk != nil {
			return chk, nil
		}
	}
	chk, err := b.checkConfig(ctx, req, p)
	if err != nil {
		return nil, err
	}
	b.keepCheck(p.key, chk)
	return chk, nil
}

func (b *Builder) checkConfig(ctx context.Context, req Request, p *prepared) (*ConfigCheck, error) {
	unlock, err := b.useTree(ctx, req, p)
	if err != nil {
		return nil, err
	}
	defer unlock()
	restore, err := b.applyVariant(p)
	if err != nil {
		return nil, err
	}
	defer restore()
	kc, err := b.checkTree(ctx, p)
	if err != nil {
		return nil, err
	}
	b.report(Progress{Phase: "config", Current: "make allnoconfig/olddefconfig"})
	final, err := b.GenerateConfig(ctx, p.plan, p.tree, ".kmodvm-check.config")
	if err != nil {
		return nil, err
	}
	base, err := b.BaseConfig(ctx, p.plan, p.tree)
	if err != nil {
		return nil, err
	}
	rep := verify(p.plan, final, kc)
	return &ConfigCheck{Plan: p.plan, Final: final, Changes: kconfig.Diff(base, final), Report: rep, Tree: p.tree}, nil
}

// checkFile, in a built kernel's cache entry, keeps what `kmodvm kernel config` reports for
// it. The check's two Kconfig passes take most of a minute in the toolchain root, and for
// a built kernel their answer cannot change: the entry's key covers everything they read.
const checkFile = "check.json"

// keptConfigCheck is checkFile's content; the final config is the entry's own.
type keptConfigCheck struct {
	ConfigHash string            `json:"config_hash"`
	Changes    []kconfig.Change  `json:"changes"`
	Problems   []kconfig.Problem `json:"problems"`
	Step       string            `json:"step"`
}

// keptCheck returns the check kept in p's built cache entry, nil when there is none (or it
// does not belong to the entry's config: then the check runs again and replaces it).
func (b *Builder) keptCheck(p *prepared) *ConfigCheck {
	r, err := b.cached(p.key)
	if err != nil || r == nil {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(r.Dir, checkFile))
	if err != nil {
		return nil
	}
	var kept keptConfigCheck
	if err := json.Unmarshal(data, &kept); err != nil {
		return nil
	}
	f, err := os.Open(r.ConfigFile())
	if err != nil {
		return nil
	}
	defer f.Close()
	final, err := kconfig.Parse(f)
	if err != nil || final.Hash() != kept.ConfigHash {
		return nil
	}
	return &ConfigCheck{Plan: p.plan, Final: final, Changes: kept.Changes,
		Report: kconfig.Report{Problems: kept.Problems, Step: kept.Step}, Tree: p.tree}
}

// keepCheck keeps chk in the built cache entry of key, when there is one and its config is
// chk's; a cache that cannot be written only means the next check runs again.
func (b *Builder) keepCheck(key string, chk *ConfigCheck) {
	r, err := b.cached(key)
	if err != nil || r == nil || r.ConfigHash != chk.Final.Hash() {
		return
	}
	data, err := json.MarshalIndent(keptConfigCheck{ConfigHash: r.ConfigHash, Changes: chk.Changes,
		Problems: chk.Report.Problems, Step: chk.Report.Step}, "", "  ")
	if err == nil {
		err = ondisk.WriteFileAtomic(filepath.Join(r.Dir, checkFile), data, 0o644)
	}
	if err != nil {
		b.logger().Debug("not keeping the config check", "kernel", key, "err", err)
	}
}

// checkTree gates the toolchain on p's tree and prechecks p's plan against the tree's
// Kconfig, which it returns: what needs no Kconfig run fails before one.
func (b *Builder) checkTree(ctx context.Context, p *prepared) (*kconfig.Kconfig, error) {
	if err := b.gate(ctx, p.tree); err != nil {
		return nil, err
	}
	kc, err := loadKconfig(p.tree)
	if err != nil {
		return nil, err
	}
	if err := Precheck(p.plan, kc); err != nil {
		return nil, err
	}
	return kc, nil
}

// Build returns the cached kernel for req or builds it: toolchain gate, config, verify,
// make, install, stage. Only a complete build becomes a cache entry.
func (b *Builder) Build(ctx context.Context, req Request) (*Result, error) {
	start := time.Now()
	p, err := b.identify(ctx, req)
	if err != nil {
		return nil, err
	}
	if dir := p.readySources(); dir != "" { // a cache hit needs no lock
		if err := b.planFrom(ctx, req, p, dir); err != nil {
			return nil, err
		}
		if r, err := b.cached(p.key); r != nil || err != nil {
			b.reportWarnings(r, start)
			return r, err
		}
	}
	unlock, err := b.useTree(ctx, req, p)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if r, err := b.cached(p.key); r != nil || err != nil { // built while we waited
		b.reportWarnings(r, start)
		return r, err
	}
	restore, err := b.applyVariant(p)
	if err != nil {
		return nil, err
	}
	defer restore()
	kc, err := b.checkTree(ctx, p)
	if err != nil {
		return nil, err
	}

	logPath := filepath.Join(b.Cache, "logs", p.key+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	var final *kconfig.Config
	err = whileBuilding(p.tree, func() (err error) {
		final, err = b.configAndMake(ctx, p, kc, logf, start)
		return err
	})
	if err != nil {
		return nil, err
	}
	release, err := b.kernelRelease(ctx, p.tree)
	if err != nil {
		return nil, err
	}
	warnings, err := checkBindings(p.tree, p.bindings, final)
	if err != nil {
		return nil, err
	}
	res := &Result{
		Key: p.key, Release: release, ConfigHash: final.Hash(), SourceID: p.sourceID,
		Base: p.plan.Base, Debug: p.plan.Debug, Toolchain: p.toolchain, Warnings: warnings,
	}
	b.reportWarnings(res, start)
	dir, _, err := ondisk.Entry(ctx, b.logger(), filepath.Join(b.Cache, "builds"), p.key, func(tmp, _ string) error {
		return b.fillEntry(ctx, p.tree, tmp, res, logf, start)
	})
	if err != nil {
		return nil, err
	}
	res.Dir = dir
	return res, nil
}

// reportWarnings reports a kernel's warnings as progress, a cached kernel's too: they are
// about what the kernel lacks, whenever it is used.
func (b *Builder) reportWarnings(r *Result, start time.Time) {
	if r == nil {
		return
	}
	for _, w := range r.Warnings {
		b.logger().Info("kernel warning", "key", r.Key, "warning", w)
		b.report(Progress{Phase: "bindings", Current: w, Elapsed: time.Since(start)})
	}
}

// configAndMake generates and verifies the config in the tree, then runs the full make.
func (b *Builder) configAndMake(ctx context.Context, p *prepared, kc *kconfig.Kconfig, logf *os.File, start time.Time) (*kconfig.Config, error) {
	b.report(Progress{Phase: "config", Current: "generating .config", Elapsed: time.Since(start)})
	final, err := b.GenerateConfig(ctx, p.plan, p.tree, ".config")
	if err != nil {
		return nil, err
	}
	if err := b.verifyError(ctx, p.tree, verify(p.plan, final, kc)); err != nil {
		return nil, err
	}
	b.logger().Info("building kernel", "tree", p.tree, "log", logf.Name(), "key", p.key)
	b.report(Progress{Phase: "make", Current: "make LLVM=1 in the toolchain root; full log in " + logf.Name(), Elapsed: time.Since(start)})
	return final, b.makeWithProgress(ctx, p.tree, logf, start)
}

// fillEntry installs and stages a finished build into the cache entry directory tmp.
func (b *Builder) fillEntry(ctx context.Context, tree, tmp string, res *Result, logf *os.File, start time.Time) error {
	b.report(Progress{Phase: "install", Current: "modules_install", Elapsed: time.Since(start)})
	modules := filepath.Join(tmp, "modules")
	if err := os.MkdirAll(modules, 0o755); err != nil {
		return err
	}
	if err := b.make(ctx, tree, []images.Bind{{Host: modules, Guest: "/tmp/kmodvm-modules"}}, nil,
		"modules_install", "INSTALL_MOD_PATH=/tmp/kmodvm-modules"); err != nil {
		return fmt.Errorf("install kernel modules: %w", err)
	}
	modDir := filepath.Join(modules, "lib", "modules", res.Release)
	for _, l := range []string{"build", "source"} {
		os.Remove(filepath.Join(modDir, l))
	}
	if err := os.Symlink(GuestTree, filepath.Join(modDir, "build")); err != nil {
		return err
	}
	if err := ondisk.CopyFile(filepath.Join(tree, "arch/x86/boot/bzImage"), filepath.Join(tmp, bzimageName)); err != nil {
		return fmt.Errorf("copy bzImage: %w", err)
	}
	if err := ondisk.CopyFile(filepath.Join(tree, ".config"), filepath.Join(tmp, "config")); err != nil {
		return err
	}
	if res.Debug {
		if err := ondisk.CopyFile(filepath.Join(tree, "vmlinux"), filepath.Join(tmp, vmlinuxName)); err != nil {
			return fmt.Errorf("copy vmlinux of the debug kernel: %w", err)
		}
	}
	b.report(Progress{Phase: "stage", Current: "staging the module build tree", Elapsed: time.Since(start)})
	if err := StageKDir(ctx, tree, filepath.Join(tmp, "kdir")); err != nil {
		return fmt.Errorf("stage kernel build tree: %w", err)
	}
	if err := StageRustSources(ctx, tree, filepath.Join(tmp, rustSrcName)); err != nil {
		return fmt.Errorf("keep the kernel's Rust sources: %w", err)
	}
	b.report(Progress{Phase: "stage", Current: "indexing the Rust bindings", Elapsed: time.Since(start)})
	if err := bindindex.Stage(ctx, tree, filepath.Join(tmp, bindingsName)); err != nil {
		return fmt.Errorf("index the kernel's Rust bindings: %w", err)
	}
	res.BuildTime = time.Since(start)
	data, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "info.json"), data, 0o644); err != nil {
		return err
	}
	if err := logf.Close(); err != nil {
		return err
	}
	return ondisk.CopyFile(logf.Name(), filepath.Join(tmp, ondisk.LogName))
}

// gate is the toolchain check before any long work: `make rustavailable`.
func (b *Builder) gate(ctx context.Context, tree string) error {
	out, err := b.rustAvailable(ctx, tree)
	if err != nil {
		return fmt.Errorf("the toolchain root cannot build Rust kernel code; `make LLVM=1 rustavailable` says:\n%s\nhint: the image's rustc, bindgen and libclang must match this kernel version; try image.suite sid with its linux-source, or see Documentation/rust/quick-start.rst", indent(out))
	}
	return nil
}

func (b *Builder) rustAvailable(ctx context.Context, tree string) (string, error) {
	var out strings.Builder
	err := b.makeTo(ctx, tree, nil, nil, &out, "rustavailable")
	return out.String(), err
}

func (b *Builder) kernelRelease(ctx context.Context, tree string) (string, error) {
	var out strings.Builder
	if err := b.makeTo(ctx, tree, nil, nil, &out, "-s", "kernelrelease"); err != nil {
		return "", fmt.Errorf("make kernelrelease: %w", err)
	}
	rel := strings.TrimSpace(out.String())
	if rel == "" || strings.ContainsAny(rel, "/ \n") {
		return "", fmt.Errorf("make kernelrelease printed %q", out.String())
	}
	return rel, nil
}

// make runs make in the build tree; its output lands in the error on failure.
func (b *Builder) make(ctx context.Context, tree string, binds []images.Bind, env []string, args ...string) error {
	var out strings.Builder
	if err := b.makeTo(ctx, tree, binds, env, &out, args...); err != nil {
		return fmt.Errorf("%w\n%s", err, lastLines(out.String(), 20))
	}
	return nil
}

func (b *Builder) makeTo(ctx context.Context, tree string, binds []images.Bind, env []string, out io.Writer, args ...string) error {
	argv := append([]string{"make", "LLVM=1", "ARCH=x86_64"}, args...)
	cmd := b.Root.Command(ctx, runOptions(append([]images.Bind{{Host: tree, Guest: GuestTree}}, binds...), GuestTree, env, out, out), argv...)
	err := cmd.Run()
	if err != nil && images.KilledHard(cmd) {
		err = fmt.Errorf("%w: %w", errKilled, err)
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (make %s: %w)", ctx.Err(), strings.Join(args, " "), err)
	}
	return err
}

var stepRe = regexp.MustCompile(`^  ([A-Z][A-Z0-9_]*(?: [A-Z])?)\s+(\S+)`)

// makeWithProgress runs the full build, teeing output to the log and reporting steps.
func (b *Builder) makeWithProgress(ctx context.Context, tree string, logf io.Writer, start time.Time) error {
	countFile := filepath.Join(tree, ".kmodvm-steps")
	total := 0
	if data, err := os.ReadFile(countFile); err == nil {
		total, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	jobs := b.Jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	steps := 0
	var tail []string
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			tail = append(tail, line)
			if len(tail) > 40 {
				tail = tail[1:]
			}
			if m := stepRe.FindStringSubmatch(line); m != nil {
				steps++
				b.report(Progress{Phase: "build", Step: steps, Total: total, Current: m[1] + " " + m[2], Elapsed: time.Since(start)})
			}
		}
		io.Copy(io.Discard, pr)
	}()
	err := b.makeTo(ctx, tree, nil, nil, pw, fmt.Sprintf("-j%d", jobs), "all")
	pw.Close()
	<-done
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("kernel build interrupted: %w", ctx.Err())
		}
		msg := strings.Join(tail, "\n")
		hint := "hint: full log in " + logPathOf(logf)
		if strings.Contains(msg, "No space left on device") {
			hint = "hint: the disk is full; free space under " + b.Cache + " and run again (the cache was not touched). Full log in " + logPathOf(logf)
		}
		return fmt.Errorf("kernel build failed: %w; last lines:\n%s\n%s", err, indent(lastLines(msg, 15)), hint)
	}
	if total == 0 || steps > total {
		_ = os.WriteFile(countFile, []byte(strconv.Itoa(steps)), 0o644)
	}
	return nil
}

func logPathOf(w io.Writer) string {
	if f, ok := w.(*os.File); ok {
		return f.Name()
	}
	return "the build log"
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func runOptions(binds []images.Bind, dir string, env []string, stdout, stderr io.Writer) images.RunOptions {
	return images.RunOptions{Binds: binds, Dir: dir, Env: env, Stdout: stdout, Stderr: stderr}
}
