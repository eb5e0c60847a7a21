package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kmodvm/kmodvm/cmd/kmodvm/config"
	"github.com/kmodvm/kmodvm/provision/junit"
	"github.com/kmodvm/kmodvm/provision/matrix"
	"github.com/kmodvm/kmodvm/provision/sandbox"
	"github.com/kmodvm/kmodvm/vm"
)

const schemaMatrix = "kmodvm.matrix/v1"

// matrixKernel is one kernel of the matrix: a suite, or a kmodvm.yaml naming a variant.
type matrixKernel struct {
	label string
	cfg   config.Config
}

// matrixFlags are what `kmodvm matrix` is asked.
type matrixFlags struct {
	suites  []string
	configs []string
	hosts   []string
	jobs    int
	junit   string
	mf      moduleFlags
}

func (a *app) matrixCmd() *cobra.Command {
	var f matrixFlags
	c := &cobra.Command{
		Use:   "matrix [DIR...]",
		Short: "Run modules across kernels (and libvirt hosts) in parallel, one VM per cell",
		Long: `Build and judge every module DIR on every kernel, as kmodvm run does, each cell
(kernel x module) in a VM of its own that is removed afterwards. Kernels are
--suite SUITE (the suite's kernel: sid is 7.2, trixie the 6.12 LTS) and --config FILE
(a kmodvm.yaml naming a kernel variant: fragments, bindings, patches, a local tree,
debug); with neither, the kernel of ./kmodvm.yaml. Each kernel is built once, before
its first cell, and shared by its cells. VMs are spread over the --host libvirt hosts
by the CPUs and memory each has (vm.cpus and vm.memory of a VM), at most --jobs at
once. Progress goes to stderr; the result is a table, --json or --junit FILE (one
testsuite per kernel, one testcase per cell with its verdict and module log).

Exit code: 0 when every cell passed, else the exit code kmodvm run gives the first
cell (in the order kernels x modules) that did not pass, 1 for a cell that could not
be judged (its kernel did not build, its VM did not start).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runMatrix(cmd, args, &f)
		},
	}
	fl := c.Flags()
	fl.StringArrayVar(&f.suites, "suite", nil, "a kernel: the kernel of this Debian suite (sid, trixie; repeatable)")
	// Shadows the global --config: here each file is one kernel of the matrix.
	fl.StringArrayVar(&f.configs, "config", nil, "a kernel: the kernel variant this kmodvm.yaml names (repeatable)")
	fl.StringArrayVar(&f.hosts, "host", nil, "a libvirt host URI to run VMs on (repeatable; default vm.uri, this machine)")
	fl.IntVar(&f.jobs, "jobs", 0, "at most this many cells at once (0: as many as the hosts hold)")
	fl.StringVar(&f.junit, "junit", "", "also write the results as JUnit XML to FILE (one testsuite per kernel, one testcase per cell)")
	fl.BoolVar(&a.jsonOut, "json", false, "print one JSON object with every cell's result")
	f.mf.addCommon(fl)
	fl.Lookup("no-up").Hidden = true // every cell starts a VM of its own
	return c
}

// runMatrix checks everything the matrix is asked before any build: kernels, modules, hosts.
func (a *app) runMatrix(cmd *cobra.Command, args []string, f *matrixFlags) error {
	ctx := cmd.Context()
	kernels, err := a.matrixKernels(f.suites, f.configs)
	if err != nil {
		return withCode(exitUsage, err)
	}
	if len(args) == 0 {
		args = []string{a.cfg.Module.Dir}
	}
	req := f.mf.request(cmd, nil, false)
	req.command = a.commandLine()
	runs := map[string]preparedRun{}
	for _, dir := range args {
		req.dir = dir
		p, err := a.prepareRun(req)
		if err != nil {
			return err
		}
		runs[dir] = p
	}
	if f.jobs < 0 {
		return withCode(exitUsage, fmt.Errorf("--jobs %d is not a number of cells; hint: pass 1 or more, or 0 for as many as the hosts hold", f.jobs))
	}
	junitOut, err := openJUnit(f.junit, "matrix")
	if err != nil {
		return withCode(exitUsage, err)
	}
	uris := f.hosts
	if len(uris) == 0 {
		uris = []string{a.cfg.VM.URI}
	}
	hosts, err := a.matrixHosts(ctx, uris)
	if err != nil {
		return err
	}
	plan := matrix.Plan{Hosts: hosts, Jobs: f.jobs, Size: matrix.VMSize{CPUs: a.cfg.VM.CPUs, MemoryMiB: a.cfg.VM.Memory}}
	byLabel := map[string]config.Config{}
	for _, k := range kernels {
		byLabel[k.label] = k.cfg
		for _, dir := range args {
			plan.Cells = append(plan.Cells, matrix.Cell{Kernel: k.label, Module: dir})
		}
	}
	if err := plan.Check(); err != nil {
		return withCode(exitUsage, err)
	}
	r := &matrixRunner{a: a, kernels: byLabel, runs: runs, run: time.Now().Format("150405")}
	start := time.Now()
	a.prog.Status(fmt.Sprintf("matrix: %s (%s x %s) on %s", count(len(plan.Cells), "cell"), count(len(kernels), "kernel"), count(len(args), "module"), count(len(hosts), "host")))
	results, err := matrix.Run(ctx, plan, r, matrixProgress(a.stderr, plan))
	if err != nil {
		return withCode(exitUsage, err)
	}
	out := matrixJSON{Schema: schemaMatrix, Cells: make([]matrixCellJSON, len(results)), Duration: time.Since(start).Seconds()}
	for i, res := range results {
		out.Cells[i] = cellJSON(res)
		switch res.Verdict {
		case matrix.Passed:
			out.Passed++
		case matrix.Failed:
			out.Failed++
		default:
			out.Errors++
		}
		if res.Verdict == matrix.Error && res.ExitCode == exitOK {
			res.ExitCode = exitFailure
			out.Cells[i].ExitCode = exitFailure
		}
		if out.ExitCode == exitOK {
			out.ExitCode = res.ExitCode
		}
	}
	if junitOut != nil {
		if err := junitOut.writeSuites(matrixJUnit(results)); err != nil {
			return err
		}
	}
	if a.jsonOut {
		if err := a.printJSON(out); err != nil {
			return err
		}
	} else {
		printMatrix(a.stdout, out)
	}
	if ctx.Err() != nil {
		return withCode(exitInterrupted, errors.New("interrupted: the cells it stopped are errors in the table, and every cell's VM was removed"))
	}
	if out.ExitCode != exitOK {
		return silentExit(out.ExitCode)
	}
	return nil
}

// matrixKernels are the kernels the flags name, each a complete config: a suite is this
// project's kmodvm.yaml on that suite, a --config file is that file. With neither, the one
// kernel of this project's kmodvm.yaml.
func (a *app) matrixKernels(suites, configs []string) ([]matrixKernel, error) {
	var ks []matrixKernel
	seen := map[string]bool{}
	add := func(k matrixKernel) error {
		if seen[k.label] {
			return fmt.Errorf("the kernel %s is named twice; hint: name each --suite and --config once", k.label)
		}
		seen[k.label] = true
		ks = append(ks, k)
		return nil
	}
	for _, s := range suites {
		cfg := a.cfg
		cfg.Image.Suite = s
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("--suite %s: %w; hint: name a suite kmodvm builds images of, e.g. --suite %s or --suite %s", s, err, config.SuiteSid, config.SuiteTrixie)
		}
		if err := add(matrixKernel{label: s, cfg: cfg}); err != nil {
			return nil, err
		}
	}
	for _, p := range configs {
		cfg, err := config.Load(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("--config %s: no such file; hint: name a kmodvm.yaml that says which kernel to build (kmodvm kernel config --config FILE shows it)", p)
			}
			return nil, err
		}
		if err := add(matrixKernel{label: p, cfg: cfg}); err != nil {
			return nil, err
		}
	}
	if len(ks) == 0 {
		label := a.cfg.Image.Suite
		if a.cfg.Path != "" {
			label += " (" + filepath.Base(a.cfg.Path) + ")"
		}
		ks = append(ks, matrixKernel{label: label, cfg: a.cfg})
	}
	return ks, nil
}

// matrixHosts asks each libvirt host for its CPUs and memory. A remote host's cells go
// through the same up and run as `kmodvm up --uri`: each kernel and base disk is uploaded
// to the host's storage pool once, by its cache key, and shared by the cells there.
func (a *app) matrixHosts(ctx context.Context, uris []string) ([]matrix.Host, error) {
	var hosts []matrix.Host
	seen := map[string]bool{}
	for _, uri := range uris {
		if seen[uri] {
			return nil, withCode(exitUsage, fmt.Errorf("--host %s is named twice; hint: name each host once", uri))
		}
		seen[uri] = true
		sub := *a
		sub.cfg.VM.URI = uri
		lv, err := sub.connectLibvirt(ctx)
		if err != nil {
			return nil, fmt.Errorf("--host %s: %w", uri, err)
		}
		n, err := vm.NodeOf(lv)
		_ = lv.Disconnect()
		if err != nil {
			return nil, fmt.Errorf("--host %s: %w", uri, err)
		}
		hosts = append(hosts, matrix.Host{URI: uri, CPUs: n.CPUs, MemoryMiB: n.MemoryMiB})
	}
	return hosts, nil
}

// matrixRunner does a cell as `kmodvm up --cold` on a VM of its own, `kmodvm run` and
// `kmodvm destroy` do.
type matrixRunner struct {
	a       *app
	kernels map[string]config.Config
	runs    map[string]preparedRun // by module dir as given
	run     string                 // names this matrix run's VMs
	n       atomic.Int32
}

// forKernel is the app with a kernel's settings; its progress and log go where the
// matrix's do unless quiet.
func (r *matrixRunner) forKernel(label string, quiet bool) *app {
	sub := *r.a
	sub.cfg = r.kernels[label]
	sub.cfg.VM.CPUs, sub.cfg.VM.Memory = r.a.cfg.VM.CPUs, r.a.cfg.VM.Memory
	sub.cfg.VM.CrashRetention = 0 // the VM goes with the cell; its result holds the trace
	sub.jsonOut = false
	if quiet {
		sub.prog = newProgress(io.Discard)
	}
	return &sub
}

// Prepare builds the kernel and image of label, as `kmodvm kernel build` would.
func (r *matrixRunner) Prepare(ctx context.Context, label string) error {
	sub := r.forKernel(label, false)
	if sub.prepareKernel != nil {
		return sub.prepareKernel(ctx, label)
	}
	sb, err := sub.offline()
	if err != nil {
		return err
	}
	_, err = sb.Prepare(ctx)
	return err
}

// Run builds and judges the cell's module in a new VM on host, and removes the VM. The
// cell's time is all of it: boot, run, removal.
func (r *matrixRunner) Run(ctx context.Context, cell matrix.Cell, host matrix.Host) matrix.Result {
	start := time.Now()
	sub := r.forKernel(cell.Kernel, true)
	sub.cfg.VM.URI = host.URI
	sub.cfg.VM.Port = 0
	sub.cfg.Name = fmt.Sprintf("mx-%s-%s-%d", vmTag(cell.Kernel), r.run, r.n.Add(1))
	sub.cold = true
	var report bytes.Buffer
	sub.stdout = &report
	rj, err := sub.runModule(ctx, r.runs[cell.Module])
	// Whatever happened, the cell's VM goes, also when the matrix is interrupted.
	if derr := sub.withSandbox(context.WithoutCancel(ctx), func(sb *sandbox.Sandbox) error {
		return sb.Destroy(context.WithoutCancel(ctx), sub.cfg.Name)
	}); derr != nil && !isNoSuchVM(derr) {
		sub.log.Warn("remove the matrix VM", "vm", sub.cfg.Name, "err", derr)
	}
	if err != nil {
		return matrix.Result{Verdict: matrix.Error, Summary: oneParagraph(err), ExitCode: errorCode(err), Duration: time.Since(start)}
	}
	printRun(sub, rj.Result, false)
	verdict := matrix.Passed
	if rj.ExitCode != exitOK {
		verdict = matrix.Failed
	}
	return matrix.Result{Verdict: verdict, Summary: rj.Title, Log: report.String(), Duration: time.Since(start), ExitCode: rj.ExitCode,
		KernelRelease: rj.KernelRelease}
}

// isNoSuchVM is destroy's answer for a VM that never came to be (its up failed early).
func isNoSuchVM(err error) bool {
	return strings.Contains(err.Error(), "no VM named")
}

var notTag = regexp.MustCompile(`[^a-z0-9]+`)

// vmTag is a short VM-name-safe form of a kernel's label: "trixie", "debug" for
// configs/debug.yaml.
func vmTag(label string) string {
	base := strings.TrimSuffix(filepath.Base(label), filepath.Ext(label))
	t := notTag.ReplaceAllString(strings.ToLower(base), "-")
	t = strings.Trim(t[:min(len(t), 12)], "-")
	if t == "" {
		t = "k"
	}
	return t
}

func oneParagraph(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// matrixProgress prints each cell's changes as a row of a table on stderr.
func matrixProgress(w io.Writer, p matrix.Plan) func(matrix.Event) {
	kw, mw := len("KERNEL"), len("MODULE")
	for _, c := range p.Cells {
		kw, mw = max(kw, len(c.Kernel)), max(mw, len(c.Module))
	}
	start := time.Now()
	fmt.Fprintf(w, "      %-*s  %-*s  %s\n", kw, "KERNEL", mw, "MODULE", "STATE")
	return func(e matrix.Event) {
		line := fmt.Sprintf("%4.0fs %-*s  %-*s  %s", time.Since(start).Seconds(), kw, e.Cell.Kernel, mw, e.Cell.Module, e.State)
		switch {
		case e.State == "preparing":
			line = fmt.Sprintf("%4.0fs %-*s  %-*s  building kernel and image (once for its cells)", time.Since(start).Seconds(), kw, e.Cell.Kernel, mw, "*")
		case e.State == "running":
			line += " on " + e.Host
		case e.Summary != "":
			line += ": " + e.Summary
		}
		fmt.Fprintln(w, line)
	}
}

// matrixJSON is `matrix --json`.
type matrixJSON struct {
	Schema   string           `json:"schema"`
	Cells    []matrixCellJSON `json:"cells"`
	Passed   int              `json:"passed"`
	Failed   int              `json:"failed"`
	Errors   int              `json:"errors"`
	Duration float64          `json:"duration_s"`
	ExitCode int              `json:"exit_code"`
}

type matrixCellJSON struct {
	Kernel        string  `json:"kernel"`
	Module        string  `json:"module"`
	Host          string  `json:"host"`
	KernelRelease string  `json:"kernel_release,omitempty"`
	Verdict       string  `json:"verdict"` // passed, failed, error
	ExitCode      int     `json:"exit_code"`
	Summary       string  `json:"summary"`
	Log           string  `json:"log,omitempty"`
	Duration      float64 `json:"duration_s"`
}

func cellJSON(r matrix.Result) matrixCellJSON {
	return matrixCellJSON{Kernel: r.Kernel, Module: r.Module, Host: r.Host, KernelRelease: r.KernelRelease, Verdict: string(r.Verdict),
		ExitCode: r.ExitCode, Summary: r.Summary, Log: r.Log, Duration: r.Duration.Seconds()}
}

// printMatrix prints the result table and a line of totals.
func printMatrix(w io.Writer, m matrixJSON) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KERNEL\tMODULE\tHOST\tVERDICT\tTIME\tSUMMARY")
	for _, c := range m.Cells {
		kernel := c.Kernel
		if c.KernelRelease != "" {
			kernel += " (" + c.KernelRelease + ")"
		}
		host := c.Host
		if host == "" {
			host = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f s\t%s\n", kernel, c.Module, host, strings.ToUpper(c.Verdict), c.Duration, c.Summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "matrix: %d passed, %d failed, %s in %.1f s\n", m.Passed, m.Failed, count(m.Errors, "error"), m.Duration)
}

// matrixJUnit is one testsuite per kernel, one testcase per cell: a failed cell is a
// failure, a cell that could not be judged an error; the module's report is the case's
// output.
func matrixJUnit(results []matrix.Result) junit.Suites {
	report := junit.Suites{Name: "kmodvm matrix"}
	index := map[string]int{}
	for _, r := range results {
		i, ok := index[r.Kernel]
		if !ok {
			i = len(report.Suites)
			index[r.Kernel] = i
			report.Suites = append(report.Suites, junit.Suite{Name: r.Kernel})
		}
		s := &report.Suites[i]
		if r.KernelRelease != "" && len(s.Properties) == 0 {
			s.Properties = []junit.Property{{Name: "kernel_release", Value: r.KernelRelease}}
		}
		s.Time += r.Duration
		c := junit.Case{Name: r.Module, Classname: r.Kernel, Time: r.Duration}
		if r.Host != "" {
			c.SystemOut = "host: " + r.Host + "\n"
		}
		// The module's report goes with the failure a CI shows, else in the case's output.
		f := &junit.Failure{Message: r.Summary, Type: string(r.Verdict), Text: strings.TrimSpace(r.Summary + "\n\n" + r.Log)}
		switch r.Verdict {
		case matrix.Failed:
			c.Failure = f
		case matrix.Error:
			c.Error = f
		default:
			c.SystemOut += r.Log
		}
		s.Cases = append(s.Cases, c)
	}
	return report
}

// count is "1 cell", "2 cells".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
