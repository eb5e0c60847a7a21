package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/provision/treesync"
	"github.com/kmodvm/kmodvm/provision/treewatch"
)

// watchJSON is one line of `watch --json`: one iteration.
type watchJSON struct {
	Schema    string    `json:"schema"`
	Iteration int       `json:"iteration"`
	Time      time.Time `json:"time"`
	Changed   []string  `json:"changed"`
	Overflow  bool      `json:"overflow,omitempty"`
	Verdict   string    `json:"verdict"`
	Title     string    `json:"title"`
	ExitCode  int       `json:"exit_code"`
	Error     string    `json:"error,omitempty"`
	Run       *runJSON  `json:"run,omitempty"`
}

// verdictError is a watch iteration's verdict when kmodvm could not run the module at all.
const verdictError = "error"

func (a *app) watchCmd() *cobra.Command {
	var (
		mf    moduleFlags
		tests bool
		junit string
	)
	c := &cobra.Command{
		Use:   "watch [DIR]",
		Short: "Run the module again (sync, build, load, judge) every time you save",
		Long: `Do what run does (a VM that is not running is started first, unless --no-up),
once at start and again after every change in the module directory: one line per run
with its verdict, and the whole report of a run that failed. Build outputs, .git/,
target/, .kmodvmignore patterns and editors' temporary files are no change. A burst
of changes (one save, a git checkout) is one run; a change made during a run starts
one more run after it. A run is never cut short by a change: stopping a module
mid-insmod would leave the guest in a bad state.
A crashed guest is restarted, and watching goes on. Ctrl-C stops (exit 130).

With --tests each run is kmodvm test's: the module's KUnit suites, test by test.
With --json each run is one line: a kmodvm.watch/v1 object (docs/json.md).
With --junit FILE the file holds the last run's results as JUnit XML, rewritten (whole,
never half) after every run.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := mf.request(cmd, args, tests)
			p, err := a.prepareRun(req)
			if err != nil {
				return err
			}
			opt := treewatch.Options{Log: a.log}
			if a.watchOptions != nil {
				a.watchOptions(&opt)
			}
			if opt.Clock == nil {
				opt.Clock = treewatch.RealClock{}
			}
			w, err := treewatch.New(p.src.Dir, opt)
			if err != nil {
				var te *treesync.TreeError
				if errors.As(err, &te) {
					return withCode(exitUsage, err)
				}
				return err
			}
			defer w.Close()
			junitOut, err := openJUnit(junit, cmd.Name())
			if err != nil {
				return withCode(exitUsage, err)
			}
			return a.watch(cmd.Context(), w, opt.Clock, req, junitOut)
		},
	}
	f := c.Flags()
	mf.addCommon(f)
	mf.addReload(f)
	f.BoolVar(&tests, "tests", false, "run the module's KUnit tests each time, as `kmodvm test` does")
	mf.addFilter(f)
	f.BoolVar(&a.jsonOut, "json", false, "print one JSON object per run, one per line")
	f.StringVar(&junit, "junit", "", "also write the last run's results as JUnit XML to FILE, after every run")
	return c
}

// watch runs the module now and after every batch of changes w reports, until ctx ends.
// It reads the next batch only once a run is over: the changes made during a run are
// merged by w into one batch, so they make exactly one more run.
func (a *app) watch(ctx context.Context, w *treewatch.Watcher, clock treewatch.Clock, req moduleRequest, junitOut *junitFile) error {
	a.prog.Status(fmt.Sprintf("watching %s: it runs again after every change; Ctrl-C stops", w.Root()))
	var b treewatch.Batch
	for n := 1; ; n++ {
		rec, err := a.watchIteration(ctx, clock.Now(), n, b, req)
		if ctx.Err() != nil {
			return ctx.Err() // Ctrl-C during the run: the runner has left the guest clean
		}
		if err != nil && n == 1 {
			return err // kmodvm cannot run the module at all (no VM...): as run says it
		}
		if junitOut != nil && rec.Run != nil {
			if err := junitOut.write(rec.Run.Result, rec.Run.KernelRelease); err != nil {
				return err
			}
		}
		if err := a.printIteration(rec, req.tests); err != nil {
			return err
		}
		a.prog.Status("waiting for a change in " + w.Root())
		if b, err = w.Next(ctx); err != nil {
			return err
		}
		a.prog.Status("changed: " + describeBatch(b))
	}
}

// watchIteration is one run; the error is kmodvm's failure, also told in the record.
func (a *app) watchIteration(ctx context.Context, at time.Time, n int, b treewatch.Batch, req moduleRequest) (watchJSON, error) {
	rec := watchJSON{Schema: schemaWatch, Iteration: n, Time: at, Changed: b.Paths, Overflow: b.Overflow}
	if rec.Changed == nil {
		rec.Changed = []string{}
	}
	// Prepared again each time: the change may be to the Kbuild (the modules) or to
	// .kmodvmignore.
	p, err := a.prepareRun(req)
	var rj runJSON
	if err == nil {
		rj, err = a.runModule(ctx, p)
	}
	if err != nil {
		msg := userMessage(err, a.vmName())
		rec.Verdict, rec.ExitCode, rec.Error = verdictError, errorCode(err), msg
		rec.Title, _, _ = strings.Cut(msg, "\n")
		return rec, err
	}
	rec.Verdict, rec.Title, rec.ExitCode, rec.Run = rj.Verdict, rj.Title, rj.ExitCode, &rj
	return rec, nil
}

// printIteration prints a run: with --json its line, else the whole report of a run that
// failed and then the run's one line.
func (a *app) printIteration(rec watchJSON, tests bool) error {
	if a.jsonOut {
		return json.NewEncoder(a.stdout).Encode(rec) // one line
	}
	if rec.Run != nil && rec.ExitCode != exitOK {
		printReport(a, rec.Run.Result, tests)
	}
	_, err := fmt.Fprintln(a.stdout, iterationLine(rec))
	return err
}

// iterationLine is a run in one line: `[14:02:11] #3 ok — rust_hello (sync 1 changed,
// build 2.1 s, load 0.3 s)`, `[14:02:40] #4 kernel-problem — BUG: ... (sync 0 changed,
// build 1.2 s, load 1.5 s; guest restarted)`.
func iterationLine(rec watchJSON) string {
	line := fmt.Sprintf("[%s] #%d %s — ", rec.Time.Format("15:04:05"), rec.Iteration, rec.Verdict)
	if rec.Run == nil {
		return line + rec.Error
	}
	res := rec.Run.Result
	title := res.Title
	if res.Verdict == module.VerdictOK && title == "ok" {
		title = strings.Join(res.Modules, ", ")
	}
	parts := []string{fmt.Sprintf("sync %d changed", res.Sync.Changed)}
	if res.Sync.Deleted > 0 {
		parts[0] += fmt.Sprintf(", %d deleted", res.Sync.Deleted)
	}
	parts = append(parts, fmt.Sprintf("build %.1f s", res.Build.Duration.Seconds()))
	var load time.Duration
	loads := 0
	for _, s := range res.Steps {
		if s.Action == "load" {
			load += s.Duration
			loads++
		}
	}
	if loads > 0 {
		parts = append(parts, fmt.Sprintf("load %.1f s", load.Seconds()))
	}
	if len(res.KUnit) > 0 {
		parts = append(parts, fmt.Sprintf("tests %d passed, %d failed", res.Tests.Passed, res.Tests.Failed+res.Tests.Crashed))
	}
	line += title + " (" + strings.Join(parts, ", ")
	if res.Restart {
		line += "; guest restarted"
	}
	return line + ")"
}

// describeBatch says what changed, for the progress line.
func describeBatch(b treewatch.Batch) string {
	const show = 5
	s := strings.Join(b.Paths[:min(len(b.Paths), show)], ", ")
	if len(b.Paths) > show {
		s += fmt.Sprintf(" and %d more", len(b.Paths)-show)
	}
	if b.Overflow {
		if s != "" {
			s += "; "
		}
		s += "more than the kernel could report (its event queue overflowed)"
	}
	return s
}
