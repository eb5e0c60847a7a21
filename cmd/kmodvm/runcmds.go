package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kmodvm/kmodvm/cmd/kmodvm/config"
	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/provision/crashes"
	"github.com/kmodvm/kmodvm/provision/kernel"
	"github.com/kmodvm/kmodvm/provision/ktap"
	"github.com/kmodvm/kmodvm/provision/ktrace"
	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/provision/sandbox"
	"github.com/kmodvm/kmodvm/vm"
)

// detectModule finds the module in dir, else (dir "") in kmodvm.yaml's module.dir; a
// directory that holds no module is a usage error.
func (a *app) detectModule(dir string) (module.Source, error) {
	if dir == "" {
		dir = a.cfg.Module.Dir
	}
	src, err := module.Detect(dir)
	if err != nil {
		return module.Source{}, withCode(exitUsage, err)
	}
	return src, nil
}

// moduleRequest is one run or test as a command line or a tool call of `kmodvm mcp` asks for
// it; the zero value of dir, params, build and timeout means kmodvm.yaml's setting.
type moduleRequest struct {
	dir     string
	params  []string // nil: kmodvm.yaml's; empty: none
	build   string
	timeout time.Duration
	keep    bool
	reload  int
	tests   bool
	filter  string
	command string // the command line (or MCP tool) a crash bundle records
	noUp    bool   // a VM that is not running is an error, not started first
}

// preparedRun is a moduleRequest resolved against kmodvm.yaml and checked.
type preparedRun struct {
	moduleRequest
	src module.Source
}

// prepareRun resolves and checks a request before anything connects: a typo is a usage
// error, not a libvirt problem.
func (a *app) prepareRun(req moduleRequest) (preparedRun, error) {
	if req.reload < 0 {
		return preparedRun{}, withCode(exitUsage, fmt.Errorf("reload %d is not a number of load/unload cycles; hint: pass 1 or more, or leave it out for 1", req.reload))
	}
	src, err := a.detectModule(req.dir)
	if err != nil {
		return preparedRun{}, err
	}
	if req.params == nil {
		req.params = a.cfg.Module.Params
	}
	if err := checkParams(req.params); err != nil {
		return preparedRun{}, withCode(exitUsage, err)
	}
	if req.build == "" {
		req.build = a.cfg.Module.Build
	}
	if err := checkBuildWhere(req.build); err != nil {
		return preparedRun{}, withCode(exitUsage, err)
	}
	if req.timeout == 0 {
		req.timeout = a.cfg.Module.Timeout
	}
	if err := checkFilter(req.filter); err != nil {
		return preparedRun{}, withCode(exitUsage, err)
	}
	return preparedRun{moduleRequest: req, src: src}, nil
}

// moduleRunner is what a run needs of module.Runner.
type moduleRunner interface {
	Run(ctx context.Context, opt module.Options) (*module.Result, error)
	Close() error
}

// moduleVM is the VM a run works in, locked for it, and a runner on it; release closes the
// runner, then unlocks and disconnects.
type moduleVM struct {
	in      *sandbox.Instance
	runner  moduleRunner
	release func()
}

// openModuleVM reaches the VM through libvirt, with up first starts it as `kmodvm up` does
// when it is not running, and takes its lock (a second run waits, and says so).
func (a *app) openModuleVM(ctx context.Context, name string, up bool) (moduleVM, error) {
	sb, closeLV, err := a.sandbox(ctx)
	if err != nil {
		return moduleVM{}, err
	}
	if up {
		if err := a.startIfDown(ctx, sb); err != nil {
			closeLV()
			return moduleVM{}, err
		}
	}
	in, err := sb.Instance(name)
	if err != nil {
		closeLV()
		return moduleVM{}, err
	}
	unlock, err := sb.Lock(ctx, in)
	if err != nil {
		closeLV()
		return moduleVM{}, err
	}
	r := &module.Runner{
		Connect: func(ctx context.Context) (module.Guest, error) {
			return sb.Guest(ctx, in.Name)
		},
		Toolchain: &images.Root{Dir: in.RootDir, Hash: in.RootHash},
		KDir:      in.KDir,
		// The staged build tree has the kernel's headers, the entry its Rust sources, the root
		// its /usr: kernel frames and build diagnostics there map to the host, the rest keep
		// their guest path.
		Mapper: a.kernelMapper(in),
	}
	return moduleVM{in: in, runner: r, release: func() {
		r.Close()
		unlock()
		closeLV()
	}}, nil
}

// runModule syncs, builds, loads and judges the module in the VM: `run`, `test` and their
// tools in `kmodvm mcp`. The result is `run --json`'s; module problems are in its verdict,
// the error is kmodvm's own failure.
func (a *app) runModule(ctx context.Context, p preparedRun) (runJSON, error) {
	open := a.openVM
	if open == nil {
		open = a.openModuleVM
	}
	vmx, err := open(ctx, a.vmName(), !p.noUp)
	if err != nil {
		return runJSON{}, err
	}
	defer vmx.release()
	in := vmx.in
	w, err := buildLocation(p.build, in.Accel)
	if err != nil {
		return runJSON{}, withCode(exitUsage, err)
	}
	started := time.Now()
	console := crashes.MarkConsole(in.ConsoleLog())
	buildDir := in.HostBuildDir(filepath.Base(module.RemoteDir(p.src.Dir)))
	if r, ok := vmx.runner.(*module.Runner); ok {
		// Traces get file:line from llvm-addr2line in the toolchain root, over the debug
		// kernel's vmlinux and the .ko files this run builds on the host.
		sym, err := kernel.NewSymbolizer(&images.Root{Dir: in.RootDir, Hash: in.RootHash}, in.Vmlinux, buildDir)
		if err != nil {
			a.log.Warn("crash traces will have no file:line", "err", err)
		} else {
			r.Symbolizer = sym
		}
	}
	res, err := vmx.runner.Run(ctx, module.Options{
		Source: p.src, Params: p.params, Where: w, Keep: p.keep, Reload: p.reload, Timeout: p.timeout,
		BuildDir: buildDir,
		Status:   a.prog.Status,
		Tests:    p.tests, Filter: p.filter,
	})
	if err != nil {
		return runJSON{}, err
	}
	schema := schemaRun
	if p.tests {
		schema = schemaTest
	}
	rj := runJSON{Schema: schema, Result: res, KernelRelease: in.KernelRelease, ConfigHash: in.ConfigHash, Toolchain: in.Toolchain, ExitCode: verdictExitCode(res.Verdict)}
	rj.CrashID = a.keepCrash(ctx, crashRun{in: in, p: p, res: res, started: started, console: console, buildDir: buildDir})
	return rj, nil
}

func (a *app) runCmd() *cobra.Command {
	return a.moduleCmd(false)
}

func (a *app) testCmd() *cobra.Command {
	return a.moduleCmd(true)
}

// moduleFlags are the flags of the commands that run a module: run, test and watch.
type moduleFlags struct {
	noUp   bool
	params []string
	where  string
	keep   bool
	reload int
	tmo    time.Duration
	filter string
}

// addCommon defines the flags every such command takes: -p, --build, --timeout, --no-up.
func (m *moduleFlags) addCommon(f *pflag.FlagSet) {
	f.BoolVar(&m.noUp, "no-up", false, "fail when the VM is not running, instead of starting it as kmodvm up does")
	f.StringArrayVarP(&m.params, "param", "p", nil, "module parameter name=value (repeatable; default: kmodvm.yaml module.params)")
	f.StringVar(&m.where, "build", module.BuildAuto, "where to build: auto (host under TCG, guest under KVM), guest or host")
	f.DurationVar(&m.tmo, "timeout", 0, "how long a load, unload or KUnit suite may take before the guest is judged hung (default: kmodvm.yaml module.timeout, 2m)")
}

func (m *moduleFlags) addReload(f *pflag.FlagSet) {
	f.IntVar(&m.reload, "reload", 1, "load/unload cycles")
}

func (m *moduleFlags) addFilter(f *pflag.FlagSet) {
	f.StringVar(&m.filter, "filter", "", `run only the KUnit tests this glob matches: "suite" or "suite.test" (KUnit's kunit.filter_glob)`)
}

// request is the run the flags and the DIR argument ask for; a flag left out is
// kmodvm.yaml's setting.
func (m *moduleFlags) request(cmd *cobra.Command, args []string, tests bool) moduleRequest {
	req := moduleRequest{keep: m.keep, reload: m.reload, tests: tests, filter: m.filter, noUp: m.noUp}
	if len(args) > 0 {
		req.dir = args[0]
	}
	if cmd.Flags().Changed("param") {
		req.params = m.params
	}
	if cmd.Flags().Changed("build") {
		req.build = m.where
	}
	if cmd.Flags().Changed("timeout") {
		req.timeout = m.tmo
	}
	return req
}

// moduleCmd is `run`, or with tests `test`: the same loop, and for `test` the module's KUnit
// suites run and judged test by test.
func (a *app) moduleCmd(tests bool) *cobra.Command {
	var (
		mf    moduleFlags
		junit string
	)
	c := &cobra.Command{
		Use:   "run [DIR]",
		Short: "Sync, build, load and judge a module in the guest; exit code is the verdict",
		Long: `Sync the module directory into the guest, build it against the booted kernel,
insmod it, read exactly the kernel log lines the load produced, judge them, rmmod it
and judge again. A VM that does not exist or is not running is started first, as
kmodvm up does (--no-up: fail instead). A module that crashes or hangs the guest is
reported with the trace from the console log, and the guest is restarted. The KUnit
tests a module carries run at insmod (kmodvm's kernel has KUnit with autorun): a
failing test fails the run.

` + exitCodesHelp(),
		Args: cobra.MaximumNArgs(1),
	}
	if tests {
		c.Use = "test [DIR]"
		c.Short = "Build a module, run its KUnit tests in the guest, report each test"
		c.Long = `Sync and build the module as run does (starting the VM when it is not running,
unless --no-up), load it, run every KUnit suite it registers (Rust #[kunit_tests], C
kunit_test_suite()), unload it, and report each test: passed, failed (with the
failure's host path:line), skipped (with the reason) or crashed (a test that oopsed,
panicked or hung the guest; the guest is restarted). --junit writes
JUnit XML for CI, one testsuite per KUnit suite; --json the whole result.

` + exitCodesHelp()
	}
	c.RunE = func(cmd *cobra.Command, args []string) error {
		req := mf.request(cmd, args, tests)
		req.command = a.commandLine()
		p, err := a.prepareRun(req)
		if err != nil {
			return err
		}
		junitOut, err := openJUnit(junit, cmd.Name())
		if err != nil {
			return withCode(exitUsage, err)
		}
		rj, err := a.runModule(cmd.Context(), p)
		if err != nil {
			return err
		}
		if junitOut != nil {
			if err := junitOut.write(rj.Result, rj.KernelRelease); err != nil {
				return err
			}
		}
		if a.jsonOut {
			if err := a.printJSON(rj); err != nil {
				return err
			}
		} else {
			printRun(a, rj.Result, tests)
			if rj.CrashID != "" {
				fmt.Fprintf(a.stdout, "crash:   kept as %s (kmodvm crashes show %s)\n", rj.CrashID, rj.CrashID)
			}
		}
		if rj.ExitCode != exitOK {
			return silentExit(rj.ExitCode)
		}
		return nil
	}
	f := c.Flags()
	mf.addCommon(f)
	if tests {
		mf.addFilter(f)
	} else {
		f.BoolVar(&mf.keep, "keep", false, "leave the module loaded")
		mf.addReload(f)
	}
	f.StringVar(&junit, "junit", "", "also write the results as JUnit XML to FILE (one testsuite per KUnit suite that ran; a verdict no test explains is one errored case)")
	f.BoolVar(&a.jsonOut, "json", false, "print one JSON object with the whole result")
	return c
}

// checkFilter rejects a --filter KUnit cannot take: the kernel's glob is "suite" or
// "suite.test", written to a module parameter (no white space, no more than one dot).
func checkFilter(glob string) error {
	if glob == "" {
		return nil
	}
	if strings.ContainsAny(glob, " \t\n\"'") || strings.Count(glob, ".") > 1 || strings.HasPrefix(glob, ".") || len(glob) > 255 {
		return fmt.Errorf("--filter %q is not a KUnit glob: use \"suite\" or \"suite.test\" with * ? [...] wildcards and no white space, e.g. --filter 'rust_hello.*add*'; hint: `kmodvm test --json DIR` lists the suites and tests", glob)
	}
	return nil
}

// runJSON is `run --json`.
type runJSON struct {
	Schema string `json:"schema"` // schemaRun or schemaTest
	*module.Result
	KernelRelease string            `json:"kernel_release"`
	ConfigHash    string            `json:"config_hash"`
	Toolchain     map[string]string `json:"toolchain"`
	ExitCode      int               `json:"exit_code"`
	// CrashID names the crash bundle kept of this run (`kmodvm crashes show ID`).
	CrashID string `json:"crash_id,omitempty"`
}

func buildLocation(where string, accel vm.Accel) (string, error) {
	if err := checkBuildWhere(where); err != nil {
		return "", err
	}
	if where == "" || where == module.BuildAuto {
		if accel == vm.AccelKVM {
			return module.BuildGuest, nil
		}
		return module.BuildHost, nil
	}
	return where, nil
}

// checkBuildWhere rejects a --build value other than auto, guest or host.
func checkBuildWhere(where string) error {
	switch where {
	case "", module.BuildAuto, module.BuildGuest, module.BuildHost:
		return nil
	}
	return fmt.Errorf("--build %q is not one of auto, guest, host; hint: `kmodvm run --build host DIR` builds in the toolchain root on this machine, `--build guest` in the VM", where)
}

// checkParams applies kmodvm.yaml's rules for module.params to -p values, then checks that
// the kernel can be given each value exactly.
func checkParams(params []string) error {
	c := config.Default()
	for _, p := range params {
		c.Module.Params = []string{p}
		if err := c.Validate(); err != nil {
			msg := strings.TrimPrefix(err.Error(), "module.params[0]: ")
			return fmt.Errorf("module parameter %q: %s; hint: pass -p name=value, e.g. -p debug=1", p, msg)
		}
		if _, err := module.ParamWord(p); err != nil {
			return err
		}
	}
	return nil
}

// printRun prints the human report: the sync, the build, each step's kernel log, the KUnit
// results, the verdict. The crash traces of a step follow its log, decoded. For `test` (tests) a step's kernel log is printed only when the step
// went wrong: the KTAP it holds is printed as results.
func printRun(a *app, res *module.Result, tests bool) {
	printReport(a, res, tests)
	fmt.Fprintf(a.stdout, "verdict: %s — %s\n", res.Verdict, res.Title)
}

// printReport is printRun without the verdict line: `watch` ends a failed iteration's report
// with its own line.
func printReport(a *app, res *module.Result, tests bool) {
	out := a.stdout
	fmt.Fprintf(out, "sync:    %s\n", res.Sync.Summary)
	fmt.Fprintf(out, "build:   %s, %s (%.1f s)\n", res.Build.Where, map[bool]string{true: "ok", false: "FAILED"}[res.Build.OK], res.Build.Duration.Seconds())
	if !res.Build.OK {
		fmt.Fprintln(out, strings.TrimRight(res.Build.Output, "\n"))
	}
	for _, s := range res.Steps {
		state := "ok"
		if !s.OK {
			state = "FAILED: " + s.Error
		}
		what := s.Module
		if s.Suite != "" {
			what = s.Suite
		}
		fmt.Fprintf(out, "%s %s (#%d): %s (%.2f s)\n", s.Action, what, s.Iteration, state, s.Duration.Seconds())
		if !tests || !s.OK || len(s.Findings) > 0 {
			for _, l := range s.Log {
				fmt.Fprintf(out, "  %s\n", l)
			}
		}
		if s.Lost > 0 {
			fmt.Fprintf(out, "  !! %d kernel log records were overwritten in the guest (its log buffer was full) before kmodvm read them; the verdict did not see them\n", s.Lost)
		}
		for _, f := range s.Findings {
			fmt.Fprintf(out, "  !! %s: %s\n", f.Class, f.Title)
		}
		for _, t := range s.Traces {
			fmt.Fprintln(out, "  trace:")
			for l := range strings.Lines(ktrace.Format(t)) {
				fmt.Fprintf(out, "    %s", l)
			}
		}
	}
	printSuites(out, res.KUnit)
	if len(res.KUnit) > 0 {
		c := res.Tests
		fmt.Fprintf(out, "tests:   %d passed, %d failed, %d crashed, %d skipped\n", c.Passed, c.Failed, c.Crashed, c.Skipped)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(out, "note:    %s\n", n)
	}
	if res.Restart {
		fmt.Fprintln(out, "guest:   restarted after the crash; it is ready for the next run")
	}
}

func (a *app) syncCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "sync [DIR]",
		Short: "Sync a module directory into the guest (only what changed)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			dir := ""
			if len(args) > 0 {
				dir = args[0]
			}
			src, err := a.detectModule(dir)
			if err != nil {
				return err
			}
			return a.withLockedGuest(ctx, func(g *sandbox.Guest) error {
				a.prog.Status("syncing " + src.Dir + " to " + module.RemoteDir(src.Dir))
				sum, err := module.Sync(ctx, g.SSH(), src.Dir)
				if err != nil {
					return err
				}
				if a.jsonOut {
					return a.printJSON(syncJSON{Schema: schemaSync, Dir: src.Dir, GuestDir: module.RemoteDir(src.Dir), SyncResult: module.SyncResultOf(sum)})
				}
				fmt.Fprintf(a.stdout, "%s -> %s: %s\n", src.Dir, module.RemoteDir(src.Dir), sum)
				return nil
			})
		},
	}
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return c
}

// kunitBookkeeping are KUnit's diagnostic lines that the results already say: the module
// name, the per-suite and total counts, the speed attribute.
var kunitBookkeeping = regexp.MustCompile(`^# (module: |Totals: |\S*speed: |\S+: pass:\d+ fail:\d+)`)

// printSuites prints each KUnit suite's tests: status, name, time, and what a failed or
// crashed test logged (its failure, with the module's host path:line).
func printSuites(out io.Writer, suites []module.SuiteResult) {
	for _, s := range suites {
		fmt.Fprintf(out, "suite %s (%s #%d): %s (%.3f s)\n", s.Name, s.Module, s.Iteration, s.Status, s.Duration.Seconds())
		printTests(out, s.Tests, "  ")
		for _, d := range s.Diagnostics {
			if !kunitBookkeeping.MatchString(strings.TrimSpace(d)) {
				fmt.Fprintf(out, "  %s\n", strings.TrimSpace(d))
			}
		}
	}
}

func printTests(out io.Writer, tests []ktap.Test, indent string) {
	for _, t := range tests {
		line := fmt.Sprintf("%s%-8s %s", indent, t.Status, t.Name)
		if t.Duration > 0 {
			line += fmt.Sprintf(" (%.3f s)", t.Duration.Seconds())
		}
		if t.Reason != "" {
			line += " — " + t.Reason
		}
		fmt.Fprintln(out, line)
		if t.Status == ktap.Fail || t.Status == ktap.Crashed {
			for _, d := range t.Diagnostics {
				if !kunitBookkeeping.MatchString(strings.TrimSpace(d)) {
					fmt.Fprintf(out, "%s           %s\n", indent, strings.TrimSpace(d))
				}
			}
		}
		printTests(out, t.Subtests, indent+"  ")
	}
}
