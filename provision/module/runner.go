package module

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"

	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/provision/builddiag"
	"github.com/kmodvm/kmodvm/provision/kernel"
	"github.com/kmodvm/kmodvm/provision/kmsg"
	"github.com/kmodvm/kmodvm/provision/ktrace"
	"github.com/kmodvm/kmodvm/provision/rustsym"
	"github.com/kmodvm/kmodvm/provision/treesync"
	"github.com/kmodvm/kmodvm/vm/remedy"
	"github.com/kmodvm/kmodvm/vm/sshclient"
)

// Guest is the running sandbox the runner works in.
type Guest interface {
	SSH() *sshclient.Client
	ConsoleLog() string
	Running(ctx context.Context) (bool, error)
	// StoppedFromOutside says how the guest was stopped when someone other than the guest
	// stopped it (`virsh destroy`, libvirtd), and "" when it was not stopped that way (a
	// panic or reboot inside it).
	StoppedFromOutside(ctx context.Context) (string, error)
	// InjectNMI sends the guest an NMI: its kernel panics and prints where it was stuck.
	InjectNMI(ctx context.Context) error
	// Restart stops the guest hard, brings it back and reconnects (SSH() then returns the
	// new connection). how is "restored" (from the VM's pristine save: the guest's own
	// changes since its up are gone) or "rebooted".
	Restart(ctx context.Context) (how string, err error)
	Close() error
}

// Toolchain runs commands in the image's toolchain root on the host.
type Toolchain interface {
	Command(ctx context.Context, opt images.RunOptions, argv ...string) *exec.Cmd
}

// Where a module is built. BuildAuto is what a user may ask for: the host under TCG (a
// guest build is slow there), the guest under KVM.
const (
	BuildAuto  = "auto"
	BuildGuest = "guest"
	BuildHost  = "host"
)

// DefaultTimeout is how long a load or unload may run before the guest counts as hung, when
// Options.Timeout is zero.
const DefaultTimeout = 2 * time.Minute

// Options for one `kmodvm run`.
type Options struct {
	Source   Source
	Params   []string
	Where    string // guest | host
	Keep     bool   // leave the module loaded
	Reload   int    // load/unload cycles (>= 1)
	Timeout  time.Duration
	BuildDir string // host scratch dir for host builds
	Status   func(string)
	// Tests makes the run `kmodvm test`: the KUnit suites a load registers and that did not
	// run at insmod are run, and a module that runs no test does not pass.
	Tests  bool
	Filter string // KUnit glob, "suite" or "suite.test"; "" is every test
}

// Runner runs modules in one guest.
type Runner struct {
	// Connect reaches the running guest. Run calls it once, while a host build is already
	// compiling, so connecting costs no time on the critical path.
	Connect   func(ctx context.Context) (Guest, error)
	Toolchain Toolchain // for host builds
	KDir      string    // host path of the staged build tree (bound at kernel.GuestTree)
	// Symbolizer puts a source file:line on the frames of the crash traces a run's kernel
	// log holds; nil: none (the frames keep their offsets, and the result says why).
	Symbolizer ktrace.Symbolizer
	// Mapper points the paths in those traces at host files. The caller sets the kernel's
	// (GuestKernelDir, KernelSrc); Run sets the module's, for each run.
	Mapper ktrace.Mapper

	guest      Guest
	seen       logCursor  // the last kernel log record a step read
	guestFiles guestFiles // the files guest.sh uses; zero: the real ones (tests change them)
	// symbolizeBudget bounds decodeTraces; zero: DefaultSymbolizeBudget (tests shorten it).
	symbolizeBudget time.Duration
	// recovered is how each restart of this run brought the guest back (Guest.Restart).
	recovered []string
}

func (r *Runner) files() guestFiles {
	if r.guestFiles == (guestFiles{}) {
		return realGuestFiles
	}
	return r.guestFiles
}

// logCursor is the last kernel log record a step has read. The next step judges every
// record after it, also those logged between the two steps: a module's kthread, timer or
// workqueue runs on after insmod returns.
type logCursor struct {
	seq uint64
	ok  bool
}

// Close closes the connection to the guest, if Run made one.
func (r *Runner) Close() error {
	if r.guest == nil {
		return nil
	}
	return r.guest.Close()
}

// Verdicts, and the exit codes they map to.
const (
	VerdictOK            = "ok"
	VerdictBuildFailed   = "build-failed"   // 3
	VerdictLoadFailed    = "load-failed"    // 4
	VerdictKernelProblem = "kernel-problem" // 5
)

// Result is the whole story of one run (`run --json` prints it).
type Result struct {
	Module  string      `json:"module_dir"`
	Modules []string    `json:"modules"`
	Sync    SyncResult  `json:"sync"`
	Build   BuildResult `json:"build"`
	Steps   []Step      `json:"steps"`
	Verdict string      `json:"verdict"`
	Title   string      `json:"title"`
	Restart bool        `json:"guest_restarted"`
	// RecoveredBy is how the (last) restart brought the guest back: "restored" (its
	// pristine save) or "rebooted"; "" without a restart.
	RecoveredBy string        `json:"guest_recovered_by,omitempty"`
	KUnit       []SuiteResult `json:"kunit,omitempty"` // the KUnit suites that ran
	Tests       TestCounts    `json:"tests"`           // their tests
	Notes       []string      `json:"notes,omitempty"`
	Duration    time.Duration `json:"duration_ns"`
}

// SyncResult summarises the source sync.
type SyncResult struct {
	Changed  int           `json:"changed"`
	Deleted  int           `json:"deleted"`
	Summary  string        `json:"summary"`
	Duration time.Duration `json:"duration_ns"`
}

// SyncResultOf is what a sync into the guest reports.
func SyncResultOf(sum treesync.Summary) SyncResult {
	return SyncResult{Changed: sum.Changed, Deleted: sum.Deleted, Summary: sum.String(), Duration: sum.Duration}
}

// BuildResult is the module build.
type BuildResult struct {
	Where    string        `json:"where"`
	OK       bool          `json:"ok"`
	Command  string        `json:"command"`
	Output   string        `json:"output"`
	Duration time.Duration `json:"duration_ns"`
	// Hints explain the errors Output has that a person could not act on alone (an item the
	// kernel's config leaves out); Output ends with their text.
	Hints []builddiag.Hint `json:"hints,omitempty"`
}

// Step is one insmod or rmmod with what the kernel said.
type Step struct {
	Action    string         `json:"action"`          // load | unload | kunit-run
	Suite     string         `json:"suite,omitempty"` // kunit-run: the suite
	Module    string         `json:"module"`
	Iteration int            `json:"iteration"`
	OK        bool           `json:"ok"`
	Error     string         `json:"error,omitempty"` // insmod/rmmod's own message, explained
	Log       []string       `json:"log"`             // the kernel log lines it produced
	Findings  []kmsg.Finding `json:"findings,omitempty"`
	Crashed   bool           `json:"guest_crashed,omitempty"`
	// Lost counts the records the guest overwrote (its log buffer was full) before the
	// runner read them: the verdict did not see them.
	Lost   int      `json:"lost_records,omitempty"`
	Suites []string `json:"kunit_suites,omitempty"` // load: the KUnit suites it registered
	// Traces are the crash reports in Log, decoded: frames demangled and, when the
	// runner has a Symbolizer, at their host file:line.
	Traces   []ktrace.Trace `json:"traces,omitempty"`
	Duration time.Duration  `json:"duration_ns"`
	records  []kmsg.Record
	kunitOff bool // load: the kernel has no KUnit
	died     bool // the kernel oopsed during the step (taint D) and lives on
}

func (o *Options) status(s string) {
	if o.Status != nil {
		o.Status(s)
	}
}

// Run syncs, builds, loads and unloads the module and judges what the kernel said. The
// error is for kmodvm's own failures (SSH, SFTP, libvirt); module problems are in Result.
func (r *Runner) Run(ctx context.Context, opt Options) (*Result, error) {
	start := time.Now()
	if opt.Reload < 1 {
		opt.Reload = 1
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	words, err := ParamWords(opt.Params)
	if err != nil {
		return nil, err
	}
	remote := path.Join(r.files().Root, RemoteDir(opt.Source.Dir))
	res := &Result{Module: opt.Source.Dir, Modules: opt.Source.Modules}
	r.recovered = nil
	defer func() {
		res.Duration = time.Since(start)
		res.RecoveredBy, res.Notes = recoveryNotes(r.recovered, res.Notes)
	}()

	// A host build needs no guest: start it first, connect and sync meanwhile.
	var hostBuild chan builtModule
	bctx, cancelBuild := context.WithCancel(ctx)
	defer cancelBuild()
	if opt.Where == BuildHost {
		opt.status("building in the toolchain root on the host")
		hostBuild = make(chan builtModule, 1)
		go func() { hostBuild <- r.hostBuild(bctx, opt, remote) }()
	}
	waitBuild := func() builtModule {
		if hostBuild == nil {
			return builtModule{}
		}
		b := <-hostBuild
		hostBuild = nil
		return b
	}
	defer func() { cancelBuild(); waitBuild() }()

	g, err := r.Connect(ctx)
	if err != nil {
		return nil, interrupted(ctx, "connect to the guest", err)
	}
	r.guest = g
	if err := r.recoverDeadKernel(ctx, opt, res); err != nil {
		return nil, err
	}
	opt.status("syncing " + opt.Source.Dir)
	sum, err := syncTo(ctx, r.guest.SSH(), opt.Source.Dir, remote)
	if err != nil {
		return nil, r.explainLost(ctx, "sync", err)
	}
	res.Sync = SyncResultOf(sum)

	var b builtModule
	if opt.Where == BuildHost {
		b = waitBuild()
		if b.err == nil && b.result.OK {
			b.err = r.uploadKos(ctx, opt.BuildDir, remote, b.kos)
		}
	} else {
		opt.status("building in the guest")
		b = r.guestBuild(ctx, opt, remote)
	}
	if b.err != nil {
		return nil, r.explainLost(ctx, "build", b.err)
	}
	if ctx.Err() != nil { // a build interrupted is no build failure
		return nil, interrupted(ctx, "build", nil)
	}
	res.Build = b.result
	kos := b.kos
	if !res.Build.OK {
		res.Verdict, res.Title = VerdictBuildFailed, "module did not build"
		return res, nil
	}

	glob := opt.Filter
	if glob == "" {
		glob = "*.*"
	}
	var registered []string // the KUnit suites the loads registered
	kunitOff := false
	for it := 1; it <= opt.Reload; it++ {
		var loaded []string
		failed := false
		for _, ko := range kos {
			name := strings.ReplaceAll(strings.TrimSuffix(ko, ".ko"), "-", "_")
			opt.status(fmt.Sprintf("loading %s", ko))
			st, err := r.step(ctx, opt, "load", name, it, append([]string{glob, name, path.Join(remote, ko)}, words...)...)
			if err != nil || ctx.Err() != nil {
				return nil, interrupted(ctx, "load of "+name, err)
			}
			res.Steps = append(res.Steps, st)
			if st.Crashed {
				res.Restart = true
			}
			if st.OK && !st.Crashed {
				loaded = append(loaded, name) // unloaded below even if the kernel complained
			}
			kunitOff = kunitOff || st.kunitOff
			registered = append(registered, st.Suites...)
			if err := r.runSuites(ctx, opt, res, st, name); err != nil {
				return nil, err
			}
			if !st.OK || len(st.Findings) > 0 || res.Restart {
				failed = true
				break
			}
		}
		if !opt.Keep || it < opt.Reload {
			for i := len(loaded) - 1; i >= 0; i-- {
				opt.status("unloading " + loaded[i])
				st, err := r.step(ctx, opt, "unload", loaded[i], it, loaded[i])
				if err != nil || ctx.Err() != nil {
					return nil, interrupted(ctx, "unload of "+loaded[i], err)
				}
				res.Steps = append(res.Steps, st)
				if st.Crashed {
					res.Restart = true
				}
				if !st.OK || len(st.Findings) > 0 {
					failed = true
				}
			}
		}
		if failed {
			break
		}
	}
	if ctx.Err() != nil {
		return nil, interrupted(ctx, "run", nil)
	}
	res.Notes = append(res.Notes, r.decodeTraces(ctx, res.Steps, remote, opt.Source.Dir)...)
	if died(res.Steps) {
		opt.status("the kernel oopsed; restarting the guest")
		if err := r.restart(ctx); err != nil {
			return nil, fmt.Errorf("restart the guest after its kernel oopsed: %w", err)
		}
		res.Restart = true
		res.Notes = append(res.Notes, "the kernel oopsed (taint D): it lives on, but may hold locks, leaked memory or a module stuck loading, so no later verdict could trust it; kmodvm restarted the guest")
	}
	res.Tests = countTests(res.KUnit)
	if !opt.Tests && len(res.KUnit) == 0 && len(registered) > 0 {
		res.Notes = append(res.Notes, notRunNote(opt.Source.Dir, registered))
	}
	res.Verdict, res.Title = judge(res.Steps)
	if res.Verdict == VerdictOK {
		res.Verdict, res.Title = judgeTests(res, opt.Tests, registered, kunitOff)
	} else if t := crashedDuring(res.KUnit); t != "" && res.Verdict == VerdictKernelProblem {
		res.Title += " (during the KUnit test " + t + ")"
	}
	return res, nil
}

// died says whether a step left the kernel oopsed but running: one after the last step that
// crashed the guest (and restarted it).
func died(steps []Step) bool {
	d := false
	for _, st := range steps {
		d = (d || st.died) && !st.Crashed
	}
	return d
}

// restart brings the guest back afresh, even when ctx is cancelled (a guest left dead or
// oopsed helps nobody); the new guest's kernel log starts over.
func (r *Runner) restart(ctx context.Context) error {
	r.seen = logCursor{}
	how, err := r.guest.Restart(context.WithoutCancel(ctx))
	if err != nil {
		return err
	}
	r.recovered = append(r.recovered, how)
	return nil
}

// recoveryNotes says how the run's restarts brought the guest back: the last one's way, and
// a note when a restore discarded the guest's own changes (a reboot keeps its disk and
// needs no note).
func recoveryNotes(recovered, notes []string) (string, []string) {
	if len(recovered) == 0 {
		return "", notes
	}
	if slices.Contains(recovered, "restored") {
		notes = append(notes, "kmodvm recovered the guest by restoring its pristine save: the guest's own changes since its up are gone (the next run syncs the module again)")
	}
	return recovered[len(recovered)-1], notes
}

// recoverDeadKernel restarts the guest when its kernel oopsed before this run (in `kmodvm
// exec`, say, or in a run kmodvm was interrupted in): a verdict in it could not be trusted,
// and a module stuck loading could not even be loaded again.
func (r *Runner) recoverDeadKernel(ctx context.Context, opt Options, res *Result) error {
	var out bytes.Buffer
	if _, err := r.guest.SSH().Run(ctx, r.files().guestCommand("tainted"), nil, &out, io.Discard); err != nil {
		return r.explainLost(ctx, "check of the kernel's taint", err)
	}
	word, ok := strings.CutPrefix(strings.TrimSpace(out.String()), "kmodvm-taint ")
	if !ok {
		return fmt.Errorf("check the guest kernel's taint: unexpected answer %q", out.String())
	}
	t, err := kmsg.ParseTaint(word)
	if err != nil {
		return fmt.Errorf("check the guest kernel's taint: %w", err)
	}
	if !t.Died() {
		return nil
	}
	opt.status("the guest's kernel oopsed before this run; restarting it")
	if err := r.restart(ctx); err != nil {
		return fmt.Errorf("restart the guest, whose kernel had oopsed: %w", err)
	}
	res.Restart = true
	res.Notes = append(res.Notes, "the guest's kernel had oopsed before this run (taint flags "+t.Flags()+"): kmodvm restarted the guest first")
	return nil
}

// runSuites reads the KUnit results a load step logged (a kernel with autorun runs a module's
// suites at insmod) and, for `kmodvm test`, runs the suites the load registered that did not
// run then, each as a step of its own: a suite that crashes the guest is told apart from the
// load, and ends the run.
func (r *Runner) runSuites(ctx context.Context, opt Options, res *Result, load Step, name string) error {
	ran := kunitSuites(load, name, opt.Source.Dir)
	res.KUnit = append(res.KUnit, ran...)
	if !opt.Tests || !load.OK || load.Crashed || len(load.Findings) > 0 {
		return nil
	}
	for _, suite := range load.Suites {
		if slices.ContainsFunc(ran, func(s SuiteResult) bool { return s.Name == suite }) {
			continue
		}
		opt.status("running the KUnit suite " + suite)
		st, err := r.step(ctx, opt, "kunit-run", name, load.Iteration, suite)
		if err != nil || ctx.Err() != nil {
			return interrupted(ctx, "KUnit suite "+suite, err)
		}
		st.Suite = suite
		res.Steps = append(res.Steps, st)
		res.KUnit = append(res.KUnit, kunitSuites(st, name, opt.Source.Dir)...)
		if st.Crashed {
			res.Restart = true
			return nil
		}
		if !st.OK || len(st.Findings) > 0 {
			return nil
		}
	}
	return nil
}

// interrupted returns err as it is, except when ctx was cancelled during what: then an
// error that wraps ctx.Err() (a command killed by the cancellation failed only because of
// it, and is no verdict on the module).
func interrupted(ctx context.Context, what string, err error) error {
	cerr := ctx.Err()
	switch {
	case cerr == nil:
		return err
	case err != nil && errors.Is(err, cerr):
		return err
	default:
		return fmt.Errorf("%s: interrupted: %w", what, cerr)
	}
}

func judge(steps []Step) (string, string) {
	for _, s := range steps {
		if len(s.Findings) > 0 {
			return VerdictKernelProblem, s.Findings[0].Title
		}
	}
	for _, s := range steps {
		if !s.OK {
			return VerdictLoadFailed, fmt.Sprintf("%s %s failed: %s", s.Action, s.Module, s.Error)
		}
	}
	return VerdictOK, "ok"
}

// Sync mirrors a module directory into the guest, at RemoteDir(local).
func Sync(ctx context.Context, ssh *sshclient.Client, local string) (treesync.Summary, error) {
	return syncTo(ctx, ssh, local, RemoteDir(local))
}

func syncTo(ctx context.Context, ssh *sshclient.Client, local, remote string) (treesync.Summary, error) {
	c, err := ssh.SFTP()
	if err != nil {
		return treesync.Summary{}, fmt.Errorf("open SFTP to the guest: %w", err)
	}
	defer c.Close()
	if err := c.MkdirAll(remote); err != nil {
		return treesync.Summary{}, fmt.Errorf("create %s in the guest: %w", remote, err)
	}
	sum, err := treesync.Sync(ctx, c, local, remote, treesync.Options{})
	if err != nil && ctx.Err() == nil && ssh.Lost(time.Second) {
		return sum, fmt.Errorf("sync %s to the guest: the SSH connection to the guest was lost: %w; hint: rerun it, the sync picks up where it stopped (nothing is left half-written)", local, err)
	}
	if err != nil {
		return sum, fmt.Errorf("sync %s to the guest: %w", local, err)
	}
	return sum, nil
}

func makeArgs(kdir, dir string) []string {
	return []string{"make", "-C", kdir, "M=" + dir, "LLVM=1", "modules"}
}

// builtModule is the outcome of a build: a compile failure is a BuildResult with OK=false;
// err is for kmodvm's own failures.
type builtModule struct {
	result BuildResult
	kos    []string
	err    error
}

// SourceSuffix names the file beside a host build's directory (Options.BuildDir) that
// holds the path of the module's sources on the host.
const SourceSuffix = ".source"

// HostBuilt is a module directory kmodvm built on the host for a VM.
type HostBuilt struct {
	Remote  string   // where it is in the guest: RemoteDir(Source)
	Source  string   // its sources on the host
	Modules []string // the modules its last build made, as the kernel names them (_ for -)
}

// HostBuilds lists the module directories built on the host under dir (the BuildDirs of a
// VM: Instance.HostBuildDir's parent) whose sources are still there, from what each build
// recorded beside its directory.
func HostBuilds(dir string) []HostBuilt {
	files, _ := filepath.Glob(filepath.Join(dir, "*"+SourceSuffix))
	var out []HostBuilt
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		build := strings.TrimSuffix(f, SourceSuffix)
		b := HostBuilt{Remote: RemoteDir(string(src)), Source: string(src)}
		if path.Base(b.Remote) != filepath.Base(build) {
			continue // not what a build here wrote
		}
		if st, err := os.Stat(b.Source); err != nil || !st.IsDir() {
			continue
		}
		kos, _ := builtKos(build)
		for _, ko := range kos {
			b.Modules = append(b.Modules, strings.ReplaceAll(strings.TrimSuffix(filepath.Base(ko), ".ko"), "-", "_"))
		}
		out = append(out, b)
	}
	return out
}

// hostBuild compiles the module in the toolchain root on the host, in a scratch copy of
// the sources at the path the guest uses, against the same build tree the guest has.
func (r *Runner) hostBuild(ctx context.Context, opt Options, remote string) builtModule {
	start := time.Now()
	args := makeArgs(kernel.GuestTree, remote)
	b := builtModule{result: BuildResult{Where: BuildHost, Command: strings.Join(args, " ")}}
	scratch := opt.BuildDir
	// In the VM's state dir, and private like it.
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		b.err = fmt.Errorf("create the host build directory: %w", err)
		return b
	}
	if _, err := syncLocal(ctx, opt.Source.Dir, scratch); err != nil {
		b.err = interrupted(ctx, "host build", fmt.Errorf("copy %s for the host build: %w", opt.Source.Dir, err))
		return b
	}
	// Whose copy it is: `kmodvm logs` points the paths of this module's .ko at its sources.
	if err := os.WriteFile(scratch+SourceSuffix, []byte(opt.Source.Dir), 0o600); err != nil {
		b.err = fmt.Errorf("record the sources of the host build: %w", err)
		return b
	}
	var out bytes.Buffer
	cmd := r.Toolchain.Command(ctx, images.RunOptions{
		Binds: []images.Bind{{Host: r.KDir, Guest: kernel.GuestTree, ReadOnly: true}, {Host: scratch, Guest: remote}},
		Dir:   remote, Stdout: &out, Stderr: &out,
		// The module's Makefile runs here: it must not change the toolchain root, which every
		// kernel build and guest disk is made from. Only the module's own dir is writable,
		// plus fresh tmpfs at /root (HOME, and under it the module dir's mount point) and at
		// /usr/src (under it the build tree's).
		ReadOnlyRoot: true, Tmpfs: []string{"/root", path.Dir(path.Dir(kernel.GuestTree))},
	}, args...)
	code := 0
	err := cmd.Run()
	if ctx.Err() != nil { // make killed by the cancellation: no exit code to judge
		b.err = interrupted(ctx, "host build", nil)
		return b
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		b.err = fmt.Errorf("run the host module build: %w", err)
		return b
	}
	if code == 0 {
		if b.kos, err = builtKos(scratch); err != nil {
			b.err = err
			return b
		}
	}
	b.finish(start, code, out.String(), r.mapper(remote, opt.Source.Dir), r.KDir)
	return b
}

// guestBuild compiles the module in the guest over SSH.
func (r *Runner) guestBuild(ctx context.Context, opt Options, remote string) builtModule {
	start := time.Now()
	args := makeArgs("/lib/modules/$(uname -r)/build", remote)
	b := builtModule{result: BuildResult{Where: BuildGuest, Command: strings.Join(args, " ")}}
	var out streamsBuffer
	code, err := r.guest.SSH().Run(ctx, r.files().guestCommand("build", remote), nil, &out, &out)
	if ctx.Err() != nil {
		r.abandon(ctx, opt, "build")
		b.err = interrupted(ctx, "guest build", nil)
		return b
	}
	if err != nil {
		b.err = fmt.Errorf("run the module build in the guest: %w", err)
		return b
	}
	if code == 0 {
		if b.kos, err = r.guestKos(remote); err != nil {
			b.err = err
			return b
		}
	}
	b.finish(start, code, out.String(), r.mapper(remote, opt.Source.Dir), r.KDir)
	return b
}

// streamsBuffer collects a command's output safely from the SSH session's copying
// goroutines: one per stream (into one bytes.Buffer, two copies' ReadFrom calls cut each
// other's output), and they may still run when a cancelled Run has returned.
type streamsBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *streamsBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *streamsBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// finish records a build's outcome: its output made readable on the host (buildOutput) and
// whether it made a module.
func (b *builtModule) finish(start time.Time, code int, out string, m ktrace.Mapper, kdir string) {
	b.result.Duration = time.Since(start)
	b.result.Output, b.result.Hints = buildOutput(out, m, kdir)
	b.result.OK = code == 0
	if b.result.OK && len(b.kos) == 0 {
		b.result.OK = false
		b.result.Output += "\nkmodvm: the build succeeded but produced no .ko file"
	}
}

// syncLocal mirrors the module sources into the host build directory with the same sync
// code the guest gets (ignore rules, deletions, atomic writes), over an in-process SFTP
// server on that directory.
func syncLocal(ctx context.Context, src, dst string) (treesync.Summary, error) {
	a, b := net.Pipe()
	srv, err := sftp.NewServer(a, sftp.WithServerWorkingDirectory(dst))
	if err != nil {
		return treesync.Summary{}, err
	}
	go func() { _ = srv.Serve(); a.Close() }()
	c, err := sftp.NewClientPipe(b, b)
	if err != nil {
		srv.Close()
		return treesync.Summary{}, err
	}
	defer func() { c.Close(); srv.Close() }()
	return treesync.Sync(ctx, c, src, dst, treesync.Options{})
}

// builtKos lists the .ko files a host build left in dir: regular files only. The build ran
// the module's own Makefile, which could leave a symlink named x.ko pointing anywhere on the
// host; kmodvm, reading it outside the build's sandbox, must not follow it.
func builtKos(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("list the host build's output: %w", err)
	}
	defer f.Close()
	ents, err := f.Readdir(-1) // lstat: a symlink is no regular file
	if err != nil {
		return nil, fmt.Errorf("list the host build's output: %w", err)
	}
	return regularKos(ents), nil
}

// regularKos names the .ko files among ents that are regular files.
func regularKos(ents []os.FileInfo) []string {
	var names []string
	for _, e := range ents {
		if e.Mode().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return kosIn(names)
}

// readKo reads a host-built .ko without following a symlink put in its place.
func readKo(p string) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("read the built module %s: %w", p, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read the built module %s: not a regular file", p)
	}
	return io.ReadAll(f)
}

// guestKos lists the .ko files a guest build left in remote.
func (r *Runner) guestKos(remote string) ([]string, error) {
	c, err := r.guest.SSH().SFTP()
	if err != nil {
		return nil, fmt.Errorf("open SFTP to the guest: %w", err)
	}
	defer c.Close()
	ents, err := c.ReadDir(remote)
	if err != nil {
		return nil, fmt.Errorf("list the guest build's output: %w", err)
	}
	return regularKos(ents), nil
}

// uploadKos puts host-built .ko files into the guest (temp name, then rename).
func (r *Runner) uploadKos(ctx context.Context, local, remote string, kos []string) error {
	c, err := r.guest.SSH().SFTP()
	if err != nil {
		return fmt.Errorf("open SFTP to the guest: %w", err)
	}
	defer c.Close()
	for _, ko := range kos {
		if ctx.Err() != nil {
			return interrupted(ctx, "upload of the built module", nil)
		}
		data, err := readKo(filepath.Join(local, ko))
		if err != nil {
			return err
		}
		tmp := path.Join(remote, "."+ko+".kmodvm-upload")
		f, err := c.Create(tmp)
		if err != nil {
			return fmt.Errorf("upload %s: %w", ko, err)
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return fmt.Errorf("upload %s: %w", ko, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("upload %s: %w", ko, err)
		}
		if err := c.PosixRename(tmp, path.Join(remote, ko)); err != nil {
			return fmt.Errorf("upload %s: %w", ko, err)
		}
	}
	return nil
}

// step runs one load or unload, watching the guest: if it dies or hangs, the console log
// has the story, and the guest is restarted.
func (r *Runner) step(ctx context.Context, opt Options, action, name string, it int, args ...string) (Step, error) {
	start := time.Now()
	st := Step{Action: action, Module: name, Iteration: it}
	consoleOff := fileSize(r.guest.ConsoleLog())
	type result struct {
		out  string
		code int
		err  error
	}
	done := make(chan result, 1)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		var out streamsBuffer // Run returns on cancellation while the session may still copy
		code, err := r.guest.SSH().Run(sctx, r.files().guestCommand(append([]string{action}, args...)...), nil, &out, io.Discard)
		done <- result{out.String(), code, err}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	timeout := time.NewTimer(opt.Timeout)
	defer timeout.Stop()
	var why string
	hung := false
wait:
	for {
		select {
		case <-ctx.Done():
			r.abandon(ctx, opt, action+" of "+name)
			return st, interrupted(ctx, action+" of "+name, nil)
		case res := <-done:
			if ctx.Err() != nil { // the command ended because of the cancellation
				r.abandon(ctx, opt, action+" of "+name)
				return st, interrupted(ctx, action+" of "+name, nil)
			}
			so := parseStep(res.out, r.seen)
			if so.staleFail != "" {
				return st, remedy.WithNote(fmt.Errorf("module %s is already loaded in the guest and cannot be unloaded: %s", name, so.staleFail), "", "a fresh boot unloads it:", remedy.RestartVM)
			}
			if so.stale {
				opt.status(fmt.Sprintf("%s was already loaded; unloaded it first", name))
			}
			if res.err == nil && so.complete {
				st.records, st.Lost = so.records, so.lost
				st.Suites, st.kunitOff = so.suites, so.kunitOff
				st.died = so.taint2.Died()
				r.seen = so.last
				st.OK = so.rc == 0
				if !st.OK {
					st.Error = explainFailure(action, name, so.errText, so.records)
				}
				v := kmsg.Classify(so.records)
				st.Findings = v.Findings
				if f := kmsg.JudgeTaint(so.taint, so.taint2); f != nil && len(st.Findings) == 0 {
					st.Findings = append(st.Findings, *f)
				}
				break wait
			}
			if err := r.waitStopped(ctx, 5*time.Second); err != nil {
				return st, interrupted(ctx, action+" of "+name, err)
			}
			why = "the guest stopped (kernel panic or reboot)"
			if ok, err := r.guest.Running(ctx); err == nil && ok {
				why = "the SSH connection to the guest was lost"
			}
			break wait
		case <-tick.C:
			if ok, err := r.guest.Running(ctx); err == nil && !ok {
				why = "the guest stopped"
				break wait
			}
		case <-timeout.C:
			why = fmt.Sprintf("no progress within %s (hung?)", opt.Timeout)
			hung = true
			break wait
		}
	}
	if why != "" {
		cancel()
		if hung {
			r.askWhereHung(ctx, opt)
		}
		st.Crashed = true
		st.OK = false
		st.Error = why
		st.records = consoleRecords(r.guest.ConsoleLog(), consoleOff)
		v := kmsg.Classify(st.records)
		st.Findings = v.Findings
		if hung {
			st.Findings = hungFindings(st.Findings, action+" "+name, why)
		}
		if len(st.Findings) == 0 {
			if err := r.stoppedFromOutside(ctx, action+" of "+name); err != nil {
				return st, err
			}
			st.Findings = []kmsg.Finding{{Class: "panic", Title: "guest died or hung while running " + action + " " + name + ": " + why}}
		}
		opt.status("the guest died or hung; restarting it")
		if err := r.restart(ctx); err != nil {
			return st, fmt.Errorf("restart the guest after the %s of %s: %w", action, name, err)
		}
	}
	for _, rec := range st.records {
		st.Log = append(st.Log, rustsym.DemangleText(rec.Format(true)))
	}
	st.Duration = time.Since(start)
	return st, nil
}

// askWhereHung makes a hung guest say where it is stuck before it is restarted, on its
// console, which the step reads next: the stacks of its blocked tasks (SysRq w, when SSH
// still answers: a deadlock, a wait that never ends), then an NMI, on which its kernel
// (booted with unknown_nmi_panic) panics with the trace of what its CPU was running (a
// loop with interrupts off, which nothing else can stop), and stops.
func (r *Runner) askWhereHung(ctx context.Context, opt Options) {
	opt.status("the guest hung; asking it where (its blocked tasks, then an NMI)")
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := r.guest.SSH().Run(sctx, r.files().guestCommand("blocked"), nil, io.Discard, io.Discard)
	cancel()
	if err != nil {
		opt.status(fmt.Sprintf("the hung guest did not answer over SSH (%v); sending the NMI", err))
	}
	if err := r.guest.InjectNMI(ctx); err != nil {
		opt.status(fmt.Sprintf("could not send the hung guest an NMI: %v", err))
		return
	}
	// The panic, the console flush and the stop take a few seconds under TCG.
	if err := r.waitStopped(ctx, 30*time.Second); err != nil {
		opt.status(fmt.Sprintf("waiting for the hung guest to stop after the NMI: %v", err))
	}
}

// hungFindings retitles the panic kmodvm caused with its NMI (its trace shows where the
// guest was stuck) as the hang it is: what hung and, when the trace shows it, where.
func hungFindings(fs []kmsg.Finding, what, why string) []kmsg.Finding {
	for i, f := range fs {
		if f.Class != kmsg.ClassPanic || !strings.Contains(f.Title, nmiPanic) {
			continue
		}
		title := "guest hung while running " + what + ": " + why
		for _, l := range f.Report {
			// The first module frame: the NMI interrupted it, or what it called.
			if fr, ok := ktrace.ParseFrame(l); ok && fr.Module != "" {
				title += "; its CPU was in " + fr.Func + " [" + fr.Module + "]"
				break
			}
		}
		fs[i].Title = title
		// The hang is the verdict's finding; the NMI's own report stays with it.
		return append(append([]kmsg.Finding{fs[i]}, fs[:i]...), fs[i+1:]...)
	}
	return fs
}

// nmiPanic is how the kernel's panic on kmodvm's NMI begins (arch/x86/kernel/nmi.c).
const nmiPanic = "Kernel panic - not syncing: NMI: Not continuing"

// abandon stops the guest's job (guest.sh abandon) after kmodvm was interrupted during what,
// within a few seconds of its own (the user is waiting to get the prompt back).
func (r *Runner) abandon(ctx context.Context, opt Options, what string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := r.guest.SSH().Run(cctx, r.files().guestCommand("abandon"), nil, io.Discard, io.Discard); err != nil {
		opt.status(fmt.Sprintf("interrupted during the %s, and could not stop it in the guest: %v", what, err))
		return
	}
	opt.status(fmt.Sprintf("interrupted: stopped the %s in the guest", what))
}

// stoppedFromOutside returns the error for a guest someone else stopped during what (nil
// when it was not stopped that way): nothing is judged, and the guest is not restarted
// behind that someone's back.
func (r *Runner) stoppedFromOutside(ctx context.Context, what string) error {
	how, err := r.guest.StoppedFromOutside(ctx)
	if err != nil || how == "" {
		return nil
	}
	return remedy.WithNote(fmt.Errorf("the guest was stopped from outside kmodvm during the %s (%s); nothing was judged and the guest was left stopped", what, how), "", "rerun after", remedy.StartVM)
}

// explainLost turns an SSH or SFTP failure during what into a clear error when the reason
// is that the guest is gone.
func (r *Runner) explainLost(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return interrupted(ctx, what, err)
	}
	if r.guest == nil {
		return err
	}
	if err := r.waitStopped(ctx, 5*time.Second); err != nil { // let a dying guest settle
		return err
	}
	if err := r.stoppedFromOutside(ctx, what); err != nil {
		return err // the connection's error only says it broke
	}
	if ok, serr := r.guest.Running(ctx); serr == nil && !ok {
		return remedy.WithNote(fmt.Errorf("the guest stopped during the %s: %w; its console log %s tells why", what, err, r.guest.ConsoleLog()), "", "start it again:", remedy.StartVM)
	}
	return err
}

// waitStopped gives a dying guest a moment to reach shutoff, so a lost connection during a
// panic is told apart from a network hiccup.
func (r *Runner) waitStopped(ctx context.Context, d time.Duration) error {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(d)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return nil
		case <-t.C:
			if ok, err := r.guest.Running(ctx); err == nil && !ok {
				return nil
			}
		}
	}
}

// explainFailure turns insmod/rmmod's terse error into the kernel's reason.
func explainFailure(action, name string, errText []string, recs []kmsg.Record) string {
	msg := strings.Join(errText, "; ")
	if msg == "" {
		msg = action + " failed"
	}
	var why []string
	for _, r := range recs {
		t := r.Text
		switch {
		case strings.Contains(t, "Unknown symbol"):
			why = append(why, t)
		case strings.Contains(t, "version magic") || strings.Contains(t, "disagrees about version"):
			why = append(why, t)
		}
	}
	switch {
	case strings.Contains(msg, "Invalid module format"):
		why = append(why, "the module was built for another kernel (vermagic or layout mismatch); rebuild it against the booted kernel")
	case strings.Contains(msg, "Unknown symbol"):
		why = append(why, "the module uses symbols the kernel does not export")
	case strings.Contains(msg, "Invalid parameters") || strings.Contains(msg, "Invalid argument"):
		why = append(why, "the module's init returned -EINVAL, or the kernel rejected a parameter")
	case strings.Contains(msg, "File exists"):
		why = append(why, "a module of that name is already loaded")
	}
	if len(why) > 0 {
		msg += " — " + strings.Join(why, "; ")
	}
	return msg
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

// consoleRecords parses the console log written since off.
func consoleRecords(p string, off int64) []kmsg.Record {
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil
	}
	var recs []kmsg.Record
	_ = eachLine(f, maxConsoleLine, func(line string) {
		if rec, ok := kmsg.ParseConsoleLine(line); ok {
			recs = append(recs, rec)
		}
	})
	return recs
}

// maxConsoleLine is where eachLine cuts a console line: far above any kernel record (about
// 1 KiB), so only garbage is cut.
const maxConsoleLine = 64 * 1024

// eachLine calls fn for every line of r without its line ending, a line longer than max
// cut to its first max bytes: one overlong line (a module printing garbage) must not hide
// the panic trace after it, nor take unbounded memory.
func eachLine(r io.Reader, max int, fn func(string)) error {
	br := bufio.NewReaderSize(r, 64*1024)
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if room := max - len(line); room > 0 {
			line = append(line, chunk[:min(len(chunk), room)]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(line) > 0 {
			fn(strings.TrimRight(string(line), "\r\n"))
		}
		line = line[:0]
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
