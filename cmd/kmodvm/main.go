// Command kmodvm is a sandbox for Linux kernel module development, above all in Rust: it
// builds a Rust-enabled kernel with a matching toolchain, boots it in a libvirt/QEMU guest,
// and syncs, builds, loads and judges modules there.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kmodvm/kmodvm/cmd/kmodvm/config"
	"github.com/kmodvm/kmodvm/provision/kernel"
	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/vm/remedy"

	"github.com/spf13/cobra"
)

// Exit codes, documented in README.md: the one place they are defined.
const (
	exitOK          = 0
	exitFailure     = 1   // kmodvm itself failed (libvirt, SSH, disk...)
	exitUsage       = 2   // usage or config error
	exitBuildFailed = 3   // the module did not build
	exitLoadFailed  = 4   // the module did not load
	exitKernelIssue = 5   // the kernel reported a problem
	exitTestsFailed = 6   // KUnit tests failed, crashed, or (test) none ran
	exitInterrupted = 130 // SIGINT or SIGTERM stopped kmodvm
)

// exitCodes says what each exit code means, for --help (README.md's table says the same, with
// more words; TestREADMEExitCodes keeps the two in step).
var exitCodes = []struct {
	code    int
	meaning string
}{
	{exitOK, "ok"},
	{exitFailure, "kmodvm failed"},
	{exitUsage, "usage or config error"},
	{exitBuildFailed, "the module did not build"},
	{exitLoadFailed, "the module did not load"},
	{exitKernelIssue, "the kernel reported a problem (Oops, BUG, WARNING, panic, taint...)"},
	{exitTestsFailed, "KUnit tests failed or crashed, or `test` ran none"},
	{exitInterrupted, "interrupted"},
}

// exitCodesHelp is the exit codes as one paragraph of help text, lines under 90 columns.
func exitCodesHelp() string {
	parts := make([]string, len(exitCodes))
	for i, e := range exitCodes {
		parts[i] = fmt.Sprintf("%d %s", e.code, e.meaning)
	}
	var b strings.Builder
	col := 0
	for _, w := range strings.Fields("Exit codes: " + strings.Join(parts, ", ") + ".") {
		switch {
		case col == 0:
		case col+1+len(w) > 88:
			b.WriteByte('\n')
			col = 0
		default:
			b.WriteByte(' ')
			col++
		}
		b.WriteString(w)
		col += len(w)
	}
	return b.String()
}

// verdictExitCode is the exit code of a module run's verdict.
func verdictExitCode(verdict string) int {
	switch verdict {
	case module.VerdictOK:
		return exitOK
	case module.VerdictBuildFailed:
		return exitBuildFailed
	case module.VerdictLoadFailed:
		return exitLoadFailed
	case module.VerdictKernelProblem:
		return exitKernelIssue
	case module.VerdictTestsFailed:
		return exitTestsFailed
	}
	return exitFailure
}

// exitError carries an exit code; its message (if any) is printed as an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// silentExit exits with code without printing anything more (the output said it all).
func silentExit(code int) error { return &exitError{code: code} }

func main() {
	// Not signal.NotifyContext: it keeps catching after the first signal, so a second Ctrl-C
	// would be swallowed while kmodvm cleans up.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, stop := cancelOnSignals(context.Background(), sigs, os.Stderr, os.Exit)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	signal.Stop(sigs)
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runApp(ctx, args, stdin, stdout, stderr, nil)
}

// runApp is run with a hook that may change the app before the command runs (tests give it
// a fake VM).
func runApp(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, prepare func(*app)) int {
	root, a := newRootCmd(stdin, stdout, stderr)
	if prepare != nil {
		prepare(a)
	}
	a.args = args
	return execute(ctx, root, a, args, stderr)
}

// execute runs the command line args on root (and its app a) and returns the exit code,
// having said on stderr what went wrong. Tests call it with a's seams set.
func execute(ctx context.Context, root *cobra.Command, a *app, args []string, stderr io.Writer) int {
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	code := errorCode(err)
	var ee *exitError
	if errors.As(err, &ee) && ee.err == nil {
		return code
	}
	if isUsageError(err) {
		err = usageError(cmd, err)
	}
	if ctx.Err() != nil && code == exitFailure {
		fmt.Fprintln(stderr, "kmodvm: interrupted; nothing was left half-done (see `kmodvm status`)")
		return exitInterrupted
	}
	fmt.Fprintf(stderr, "kmodvm: %s\n", userMessage(err, a.vmName()))
	return code
}

// errorCode is the exit code of a command that failed with err: the code it carries
// (withCode), 2 for a usage or config error, else 1.
func errorCode(err error) int {
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case isUsageError(err), isConfigError(err):
		return exitUsage
	}
	return exitFailure
}

// userMessage is an error as a person reads it after "kmodvm: ", and a client of `kmodvm mcp`
// in a tool's error result: the message with the hint that says what to do about it (for
// vmName when the error names no VM), and where kmodvm writes when a disk is full.
func userMessage(err error, vmName string) string {
	msg := strings.TrimRight(err.Error(), "\n")
	if re := remedy.Find(err); re != nil {
		msg += "; " + renderHint(re, vmName)
	}
	if isDiskFull(err) {
		msg += "\n" + diskFullHint(os.Getenv)
	}
	return msg
}

// isDiskFull recognises a full filesystem, also when it comes as text from a tool's output
// (mmdebstrap, make, qemu-img).
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		strings.Contains(strings.ToLower(err.Error()), "no space left on device")
}

// diskFullHint says where kmodvm writes, so the user knows what to free or move.
func diskFullHint(getenv func(string) string) string {
	home, _ := os.UserHomeDir()
	p, err := config.ResolvePaths(getenv, home)
	if err != nil {
		return "hint: a filesystem kmodvm writes to is full; free some space, or set KMODVM_HOME to a directory on a bigger filesystem"
	}
	return fmt.Sprintf("hint: a filesystem kmodvm writes to is full (cache %s, state %s; see `df -h %s %s`): free some space, or set KMODVM_HOME to a directory on a bigger filesystem. Nothing partial was kept: the next run starts that step again.", p.Cache, p.State, p.Cache, p.State)
}

// isUsageError recognises cobra's own argument and flag errors. Those are never wrapping
// errors; a wrapped one is kmodvm's (an EINVAL from a syscall says "invalid argument" too).
func isUsageError(err error) bool {
	if errors.Unwrap(err) != nil {
		return false
	}
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "requires at most", "required flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// usageError turns cobra's argument errors into one paragraph with a hint (cobra puts its
// "Did you mean this?" suggestions in a paragraph of their own).
func usageError(cmd *cobra.Command, err error) error {
	msg, sugg, _ := strings.Cut(err.Error(), "\n\nDid you mean this?\n")
	if s := strings.Fields(sugg); len(s) > 0 {
		msg += " (did you mean " + strings.Join(s, " or ") + "?)"
	}
	path := "kmodvm"
	if cmd != nil {
		path = cmd.CommandPath()
	}
	return fmt.Errorf("%s; hint: run `%s --help`", msg, path)
}

// isConfigError recognises a kernel config the user asked for that cannot work.
func isConfigError(err error) bool {
	var ce *kernel.ConfigError
	return errors.As(err, &ce)
}
