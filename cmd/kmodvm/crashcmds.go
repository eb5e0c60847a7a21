package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kmodvm/kmodvm/provision/crashes"
	"github.com/kmodvm/kmodvm/provision/ktrace"
	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/provision/sandbox"
	"github.com/kmodvm/kmodvm/vm/shellquote"
)

// crashRun is what a run that may have crashed leaves for its crash bundle.
type crashRun struct {
	in       *sandbox.Instance
	p        preparedRun
	res      *module.Result
	started  time.Time
	console  crashes.ConsoleMark // where the console log stood when the run started
	buildDir string              // the host build directory (a host build's .ko files)
}

// keepCrash saves a crash bundle when the run crashed the kernel and returns its ID. A bundle
// that cannot be saved is a warning and a note on the result, never a failed run.
func (a *app) keepCrash(ctx context.Context, c crashRun) string {
	step, class, crashed := crashes.CrashStep(c.res)
	keep := a.cfg.VM.CrashRetention
	if !crashed || keep <= 0 {
		return ""
	}
	id, err := saveCrash(ctx, c, step, class)
	if err == nil {
		err = crashes.Prune(c.in.CrashesDir(), keep)
	}
	if err != nil {
		what := "the crash was not kept"
		if id != "" {
			what = "the crash was kept as " + id + ", but older crashes were not removed"
		}
		note := fmt.Sprintf("%s: %v", what, err)
		fmt.Fprintf(a.stderr, "kmodvm: warning: %s\n", note)
		c.res.Notes = append(c.res.Notes, note)
	}
	return id
}

// saveCrash gathers the evidence of a crashed run and saves it in the VM's crash directory.
func saveCrash(ctx context.Context, c crashRun, step module.Step, class string) (string, error) {
	res := c.res
	b := crashes.Bundle{
		Meta: crashes.Meta{
			Time: c.started, VM: c.in.Name, Command: c.p.command,
			ModuleDir: res.Module, Modules: res.Modules,
			Step: crashes.StepName(step), Module: step.Module, Class: class,
			Verdict: res.Verdict, Title: res.Title, GuestRestarted: res.Restart,
			KernelRelease: c.in.KernelRelease, ConfigHash: c.in.ConfigHash,
			SourceRevision: crashes.SourceRevision(ctx, c.p.src.Dir),
		},
		Kmsg: crashes.KmsgLines(res.Steps),
		// The decoded traces of every step's kernel log (ktrace.Parse, as the run judged it).
		Traces: ktrace.Parse(crashes.LogRecords(res.Steps)),
	}
	if res.Build.Where == module.BuildHost {
		kos, err := crashes.LoadedKos(c.buildDir, res.Steps)
		if err != nil {
			b.Meta.KoNote = err.Error()
		}
		b.Kos = kos
	} else {
		b.Meta.KoNote = "built in the guest: its .ko files stay in the guest's copy of the module directory, kmodvm does not copy them out; `kmodvm run --build host` keeps them"
	}
	console, truncated, err := crashes.ConsoleSince(c.in.ConsoleLog(), c.console, crashes.MaxConsole)
	if err != nil {
		b.Meta.Notes = append(b.Meta.Notes, "no console log: "+err.Error())
	}
	b.Console, b.Meta.ConsoleTruncated = console, truncated
	return crashes.Save(c.in.CrashesDir(), b)
}

// commandLine is the kmodvm command being run, as a shell would take it: words quoted only
// when they need it.
func (a *app) commandLine() string {
	words := []string{"kmodvm"}
	for _, w := range a.args {
		words = append(words, shellWord(w))
	}
	return strings.Join(words, " ")
}

// shellWord is w as a shell reads it back: as it is when it is plain, else quoted.
func shellWord(w string) string {
	if plainWord.MatchString(w) {
		return w
	}
	return shellquote.Quote(w)
}

// plainWord is a word a shell takes as it is.
var plainWord = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// crashesJSON is `crashes --json`.
type crashesJSON struct {
	Schema  string         `json:"schema"`
	VM      string         `json:"vm"`
	Dir     string         `json:"dir"`
	Crashes []crashes.Meta `json:"crashes"`
}

// crashJSON is `crashes show --json`: meta.json, where the bundle is, and its traces.
type crashJSON struct {
	crashes.Meta
	Dir    string         `json:"dir"`
	Traces []ktrace.Trace `json:"traces"`
}

func (a *app) crashesCmd() *cobra.Command {
	list := func(cmd *cobra.Command, _ []string) error { return a.listCrashes() }
	c := &cobra.Command{
		Use:   "crashes",
		Short: "List the crashes kept of module runs in this VM, newest first",
		Long: `A run or test whose module crashes the guest's kernel (an Oops, BUG, general protection
fault, panic, Rust panic or hung task, or a guest that died or hung) keeps a crash bundle
in the VM's state directory: the run's console log, the module's kernel log, the decoded
traces, the .ko that was loaded and meta.json. kmodvm.yaml's vm.crash_retention says how
many are kept (20); destroy removes them with the VM.

  kmodvm crashes             list them: ID, time, module, title
  kmodvm crashes show ID     one bundle: what crashed, where it is kept, its traces`,
		Args:        cobra.NoArgs,
		RunE:        list,
		Annotations: map[string]string{groupRuns: "list"},
	}
	c.PersistentFlags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	c.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the crashes kept (the same as `kmodvm crashes`)",
		Args:  cobra.NoArgs,
		RunE:  list,
	}, &cobra.Command{
		Use:   "show ID",
		Short: "Show one crash: what crashed, where its bundle is, the decoded traces",
		Long:  "Show one crash bundle. ID may be the start of an ID, when only one begins with it.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.showCrash(args[0])
		},
	})
	return c
}

// crashesDir is the current VM's crash directory; the VM must exist.
func (a *app) crashesDir() (string, error) {
	sb, err := a.offline()
	if err != nil {
		return "", err
	}
	in, err := sb.Instance(a.vmName())
	if err != nil {
		return "", err
	}
	return in.CrashesDir(), nil
}

func (a *app) listCrashes() error {
	dir, err := a.crashesDir()
	if err != nil {
		return err
	}
	all, err := crashes.List(dir)
	if err != nil {
		return err
	}
	if a.jsonOut {
		if all == nil {
			all = []crashes.Meta{}
		}
		return a.printJSON(crashesJSON{Schema: schemaCrashes, VM: a.vmName(), Dir: dir, Crashes: all})
	}
	if len(all) == 0 {
		fmt.Fprintf(a.stdout, "no crashes kept of VM %s (a run whose module crashes the kernel keeps one)\n", a.vmName())
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tMODULE\tTITLE")
	for _, m := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.ID, m.Time.Local().Format("2006-01-02 15:04:05"), m.Module, m.Title)
	}
	return tw.Flush()
}

func (a *app) showCrash(ref string) error {
	dir, err := a.crashesDir()
	if err != nil {
		return err
	}
	l, err := crashes.Load(dir, ref)
	var amb *crashes.AmbiguousError
	switch {
	case errors.Is(err, crashes.ErrNotFound):
		return withCode(exitUsage, fmt.Errorf("VM %s has no crash bundle with the ID %q (or one starting with it); hint: `kmodvm crashes` lists them", a.vmName(), ref))
	case errors.As(err, &amb):
		return withCode(exitUsage, fmt.Errorf("%w; hint: give more of the ID, `kmodvm crashes` lists them", amb))
	case err != nil:
		return err
	}
	if a.jsonOut {
		return a.printJSON(crashJSON{Meta: l.Meta, Dir: l.Dir, Traces: l.Traces})
	}
	printCrash(a, l)
	return nil
}

// printCrash prints a bundle for a person: what crashed and how it was run, where the bundle
// is, then trace.txt.
func printCrash(a *app, l *crashes.Loaded) {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\n", l.ID)
	fmt.Fprintf(tw, "time:\t%s\n", l.Time.Local().Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(tw, "vm:\t%s\n", l.VM)
	fmt.Fprintf(tw, "command:\t%s\n", l.Command)
	src := l.ModuleDir
	if l.SourceRevision != "" {
		src += " at " + l.SourceRevision
	}
	fmt.Fprintf(tw, "module:\t%s (%s)\n", strings.Join(l.Modules, ", "), src)
	fmt.Fprintf(tw, "step:\t%s\n", l.Step)
	fmt.Fprintf(tw, "verdict:\t%s — %s\n", l.Verdict, l.Title)
	if l.GuestRestarted {
		fmt.Fprintf(tw, "guest:\t%s\n", "died or hung, and was restarted")
	}
	fmt.Fprintf(tw, "kernel:\t%s (config %s)\n", l.KernelRelease, shortID(l.ConfigHash))
	kos := strings.Join(l.Kos, ", ")
	if kos == "" {
		kos = "none kept"
	}
	if l.KoNote != "" {
		kos += " (" + l.KoNote + ")"
	}
	fmt.Fprintf(tw, ".ko:\t%s\n", kos)
	for _, n := range l.Notes {
		fmt.Fprintf(tw, "note:\t%s\n", n)
	}
	fmt.Fprintf(tw, "bundle:\t%s\n", l.Dir)
	tw.Flush()
	fmt.Fprintln(a.stdout)
	if strings.TrimSpace(l.TraceText) == "" {
		fmt.Fprintf(a.stdout, "no trace: the kernel log holds no report with a stack; see %s/%s and %s\n", l.Dir, crashes.KmsgFile, crashes.ConsoleFile)
		return
	}
	fmt.Fprint(a.stdout, l.TraceText)
}
