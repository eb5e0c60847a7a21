package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/kmodvm/kmodvm/cmd/kmodvm/config"
	"github.com/kmodvm/kmodvm/provision/kmsg"
	"github.com/kmodvm/kmodvm/provision/ktap"
	"github.com/kmodvm/kmodvm/provision/sandbox"
)

// `kmodvm mcp` serves the commands an agent needs as Model Context Protocol tools on
// stdin/stdout. Each tool calls the function its command calls and returns that command's
// --json shape; an error is a tool result carrying the message and hint a person gets.

func (a *app) mcpCmd() *cobra.Command {
	var allowExec bool
	c := &cobra.Command{
		Use:   "mcp",
		Short: "Serve up, status, run, test, logs, bindings and down to a coding agent (MCP over stdio)",
		Long: `Serve kmodvm to a coding agent as a Model Context Protocol server on stdin and
stdout: the tools up, status, run, test, logs, bindings and down take the arguments the
commands' flags do (dir is the module directory, name the VM; -n sets the default VM) and return
what the commands' --json prints. Progress (an image or kernel build, booting) goes to
the client as progress notifications; errors are tool results with the usual hint.
With --allow-exec the exec tool runs any command in the guest, as root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			srv, err := a.newMCPServer(allowExec)
			if err != nil {
				return err
			}
			t := &mcp.IOTransport{Reader: io.NopCloser(a.stdin), Writer: nopWriteCloser{a.stdout}}
			err = srv.Run(cmd.Context(), t)
			if err == nil || cmd.Context().Err() != nil || errors.Is(err, mcp.ErrConnectionClosed) || errors.Is(err, io.EOF) {
				return nil // the client hung up, or Ctrl-C: both end a server
			}
			return fmt.Errorf("serve MCP on stdin/stdout: %w", err)
		},
	}
	c.Flags().BoolVar(&allowExec, "allow-exec", false, "also serve the exec tool: any command in the guest, as root")
	return c
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

const mcpInstructions = `kmodvm runs Linux kernel modules in a throw-away sandbox VM with a Rust-enabled kernel.
up starts it (the first up builds an image and a kernel: that takes many minutes, and
reports progress); run and test start it the same way when it is not running. run builds,
loads, judges and unloads a module: pass dir, the module's directory on this machine; the verdict is ok, build-failed, load-failed,
kernel-problem or tests-failed, and build errors name files by their paths here. test runs
the module's KUnit tests and reports each. logs reads the guest's kernel log; down stops the
VM. bindings says which C functions and types the kernel's Rust bindings have, and how to
add one that is missing. A module that crashes the guest is reported, and the guest restarted.`

// newMCPServer is the server `kmodvm mcp` runs; exec is served only when allowExec.
func (a *app) newMCPServer(allowExec bool) (*mcp.Server, error) {
	version := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		version = bi.Main.Version
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "kmodvm", Version: version},
		&mcp.ServerOptions{Instructions: mcpInstructions, Logger: a.log})
	closed := false
	readOnly := &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: &closed}
	changes := &mcp.ToolAnnotations{OpenWorldHint: &closed}
	errs := []error{
		addTool(s, a, &mcp.Tool{Name: "up", Annotations: changes,
			Description: "Start the sandbox VM, creating it on first use (an image and a kernel build then: many minutes, with progress notifications); returns its status."},
			func(ctx context.Context, c *app, _ upArgs) (sandbox.Status, error) {
				if _, err := c.upVM(ctx); err != nil {
					return sandbox.Status{}, err
				}
				return c.vmStatus(ctx)
			}),
		addTool(s, a, &mcp.Tool{Name: "status", Annotations: readOnly,
			Description: "The VM's state, accel, kernel release, SSH port, uptime and toolchain; a problem comes with its fix."},
			func(ctx context.Context, c *app, _ vmArg) (sandbox.Status, error) {
				return c.vmStatus(ctx)
			}),
		addTool(s, a, &mcp.Tool{Name: "run", Annotations: changes,
			Description: "Sync the module directory dir into the guest, build it (diagnostics name host paths), insmod it, judge the kernel log lines the load produced, rmmod it; a VM that is not running is started first, as up does. verdict and exit_code say how it went; steps[].log is the module's log."},
			func(ctx context.Context, c *app, in runArgs) (runJSON, error) {
				req, err := in.request()
				if err != nil {
					return runJSON{}, err
				}
				req.keep, req.reload = in.Keep, in.Reload
				return c.runModuleRequest(ctx, req)
			}),
		addTool(s, a, &mcp.Tool{Name: "test", Annotations: changes,
			Description: "Build the module in dir, run its KUnit tests in the guest (started first when it is not running, as up does) and report each test (kunit[].tests: passed, failed with the host path:line, skipped, crashed) and their counts (tests)."},
			func(ctx context.Context, c *app, in testArgs) (runJSON, error) {
				req, err := in.request()
				if err != nil {
					return runJSON{}, err
				}
				req.tests, req.filter = true, in.Filter
				return c.runModuleRequest(ctx, req)
			}),
		addTool(s, a, &mcp.Tool{Name: "logs", Annotations: readOnly,
			Description: "The guest's kernel log (from the console log when SSH is down): the last tail records, or those since a kernel time, filtered by level and module."},
			func(ctx context.Context, c *app, in logsArgs) (logsResult, error) {
				return c.logsTool(ctx, in)
			}),
		addTool(s, a, &mcp.Tool{Name: "bindings", Annotations: readOnly,
			Description: "Look a C name (or, with regex, a pattern) up in the kernel's raw Rust bindings, which rustdoc hides: each item's Rust signature, generated file:line and the kernel crate's code that uses it. bound false means none: then missing says where C declares it and the kmodvm.yaml lines that bind it, or why adding a header would not."},
			func(ctx context.Context, c *app, in bindingsArgs) (bindingsJSON, error) {
				// A VM the call names must exist, as with bindings -n; -n of kmodvm mcp
				// is only the tools' default: before its first up, the kernel
				// kmodvm.yaml selects answers.
				c.name = in.Name
				out, _, _, err := c.lookupBindings(ctx, in.Query, in.Regex)
				return out, err
			}),
		addTool(s, a, &mcp.Tool{Name: "down", Annotations: changes,
			Description: "Stop the VM: a clean shutdown, a hard stop after timeout; returns its status."},
			func(ctx context.Context, c *app, in downArgs) (sandbox.Status, error) {
				timeout, err := parseDurationArg("timeout", in.Timeout, defaultDownTimeout)
				if err != nil {
					return sandbox.Status{}, err
				}
				if _, err := c.downVM(ctx, timeout); err != nil {
					return sandbox.Status{}, err
				}
				return c.vmStatus(ctx)
			}),
	}
	if allowExec {
		errs = append(errs, addTool(s, a, &mcp.Tool{Name: "exec", Annotations: changes,
			Description: "Run a command in the guest, as root, and return its exit status and output. command is the argument vector; one element is a shell command line."},
			func(ctx context.Context, c *app, in execArgs) (execResult, error) {
				return c.execTool(ctx, in)
			}))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// toolArgs are a tool's arguments: those that are settings (the VM's name, up's accel)
// apply to the call's copy of kmodvm.yaml.
type toolArgs interface {
	apply(cfg *config.Config)
}

// addTool serves a tool that works with the call's own app (see forCall) and returns h's
// result as its structured content, or h's error as an error result a person could read.
func addTool[In toolArgs, Out any](s *mcp.Server, a *app, t *mcp.Tool, h func(ctx context.Context, c *app, in In) (Out, error)) error {
	schema, err := outputSchema[Out]()
	if err != nil {
		return fmt.Errorf("output schema of the %s tool: %w", t.Name, err)
	}
	t.OutputSchema = schema
	mcp.AddTool(s, t, func(ctx context.Context, req *mcp.CallToolRequest, in In) (*mcp.CallToolResult, Out, error) {
		var out Out
		c, err := a.forCall(ctx, req, in)
		if err == nil {
			out, err = h(ctx, c, in)
		}
		if err != nil {
			vmName := a.vmName()
			if c != nil {
				vmName = c.vmName()
			}
			return nil, out, errors.New(userMessage(err, vmName))
		}
		return nil, out, nil
	})
	return nil
}

// outputSchema is a tool result's JSON schema. A KUnit test holds its subtests, a cycle
// the schema inference refuses: a test is described as an object.
func outputSchema[T any]() (*jsonschema.Schema, error) {
	return jsonschema.For[T](&jsonschema.ForOptions{TypeSchemas: map[reflect.Type]*jsonschema.Schema{
		reflect.TypeFor[ktap.Test](): {Type: "object", Description: "a KUnit test: name, status, reason, diagnostics, duration, subtests"},
	}})
}

// forCall is the app one tool call works with: kmodvm.yaml with the call's settings (the
// VM it names, else -n's), validated as the command line's are; stdout kept for the
// protocol; progress lines sent to the client when it asked for them, else to stderr.
func (a *app) forCall(ctx context.Context, req *mcp.CallToolRequest, in toolArgs) (*app, error) {
	c := *a
	in.apply(&c.cfg)
	if err := c.cfg.Validate(); err != nil {
		return nil, withCode(exitUsage, err)
	}
	c.stdout = a.stderr
	c.prog = newProgress(a.stderr)
	if tok := req.Params.GetProgressToken(); tok != nil && req.Session != nil {
		c.prog = newProgress(&progressNotifier{ctx: ctx, session: req.Session, token: tok})
	}
	return &c, nil
}

// progressNotifier sends each line the progress reporter writes as a progress notification
// of one call.
type progressNotifier struct {
	ctx     context.Context
	session *mcp.ServerSession
	token   any

	mu   sync.Mutex
	n    int
	line []byte
}

func (p *progressNotifier) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.line = append(p.line, b...)
	for {
		i := bytes.IndexByte(p.line, '\n')
		if i < 0 {
			return len(b), nil
		}
		msg := strings.TrimPrefix(string(p.line[:i]), "==> ")
		p.line = p.line[i+1:]
		p.n++
		// Progress is news, not the result: a client that stopped listening does not stop
		// the work.
		_ = p.session.NotifyProgress(p.ctx, &mcp.ProgressNotificationParams{ProgressToken: p.token, Message: msg, Progress: float64(p.n)})
	}
}

// vmArg is the VM a tool works on, as -n names it.
type vmArg struct {
	Name string `json:"name,omitempty" jsonschema:"the VM (default: the -n of kmodvm mcp, else kmodvm.yaml's name, else kmodvm)"`
}

func (v vmArg) apply(cfg *config.Config) {
	if v.Name != "" {
		cfg.Name = v.Name
	}
}

type upArgs struct {
	vmArg
	Accel string `json:"accel,omitempty" jsonschema:"accelerator of a VM up creates: auto, kvm or tcg (default: kmodvm.yaml vm.accel, else auto)"`
	Port  int    `json:"port,omitempty" jsonschema:"host port on 127.0.0.1 for the guest's SSH (default: a free one)"`
}

func (u upArgs) apply(cfg *config.Config) {
	u.vmArg.apply(cfg)
	if u.Accel != "" {
		cfg.VM.Accel = u.Accel
	}
	if u.Port != 0 {
		cfg.VM.Port = u.Port
	}
}

type bindingsArgs struct {
	vmArg
	Query string `json:"query" jsonschema:"a C or Rust name, such as file_operations (with regex: a Go regular expression matched against the names)"`
	Regex bool   `json:"regex,omitempty" jsonschema:"query is a regular expression"`
}

type downArgs struct {
	vmArg
	Timeout string `json:"timeout,omitempty" jsonschema:"how long to wait for a clean shutdown, such as 30s (the default)"`
}

// moduleArgs are the arguments run and test share, named like their flags.
type moduleArgs struct {
	vmArg
	Dir     string   `json:"dir,omitempty" jsonschema:"the module directory on this machine, with a Kbuild or Makefile (default: kmodvm.yaml module.dir)"`
	Param   []string `json:"param,omitempty" jsonschema:"module parameters as name=value (default: kmodvm.yaml module.params; [] for none)"`
	Build   string   `json:"build,omitempty" jsonschema:"where to build: auto (host under TCG, guest under KVM), guest or host (default: kmodvm.yaml module.build)"`
	Timeout string   `json:"timeout,omitempty" jsonschema:"how long a load, unload or KUnit suite may take before the guest is judged hung, such as 2m (default: kmodvm.yaml module.timeout)"`
}

func (m moduleArgs) request() (moduleRequest, error) {
	timeout, err := parseDurationArg("timeout", m.Timeout, 0)
	if err != nil {
		return moduleRequest{}, err
	}
	return moduleRequest{dir: m.Dir, params: m.Param, build: m.Build, timeout: timeout}, nil
}

type runArgs struct {
	moduleArgs
	Keep   bool `json:"keep,omitempty" jsonschema:"leave the module loaded"`
	Reload int  `json:"reload,omitempty" jsonschema:"load/unload cycles (default 1)"`
}

type testArgs struct {
	moduleArgs
	Filter string `json:"filter,omitempty" jsonschema:"run only the KUnit tests this glob matches: suite or suite.test"`
}

// runModuleRequest is prepareRun then runModule, for the run and test tools.
func (a *app) runModuleRequest(ctx context.Context, req moduleRequest) (runJSON, error) {
	req.command = "kmodvm mcp (the run tool)"
	if req.tests {
		req.command = "kmodvm mcp (the test tool)"
	}
	p, err := a.prepareRun(req)
	if err != nil {
		return runJSON{}, err
	}
	return a.runModule(ctx, p)
}

// parseDurationArg reads a duration argument ("" is def).
func parseDurationArg(name, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, withCode(exitUsage, fmt.Errorf("%s %q is not a duration; hint: write it as a number with a unit, such as 30s, 2m or 1h", name, s))
	}
	return d, nil
}

type logsArgs struct {
	vmArg
	Level  string  `json:"level,omitempty" jsonschema:"only records at this level or more urgent: emerg, alert, crit, err, warn, notice, info or debug"`
	Module string  `json:"module,omitempty" jsonschema:"only records that mention this module"`
	Tail   int     `json:"tail,omitempty" jsonschema:"only the last this many records (after the other filters; default: all)"`
	Since  float64 `json:"since,omitempty" jsonschema:"only records at or after this kernel time, in seconds since the guest booted (the time of a record)"`
}

// logsResult is the logs tool's result: the records as `logs --json` prints them, and what
// `logs` says on stderr about where they came from or what was lost.
type logsResult struct {
	Records []logLine `json:"records"`
	Notes   []string  `json:"notes,omitempty"`
}

func (a *app) logsTool(ctx context.Context, in logsArgs) (logsResult, error) {
	if in.Tail < 0 || in.Since < 0 {
		return logsResult{}, withCode(exitUsage, fmt.Errorf("tail %d and since %g: neither can be negative; hint: tail is a number of records, since a kernel time in seconds", in.Tail, in.Since))
	}
	f, err := newLogFilter(in.Level, in.Module)
	if err != nil {
		return logsResult{}, err
	}
	lc := logCollector{filter: f, since: in.Since, tail: in.Tail}
	var res logsResult
	if err := a.readLogs(ctx, false, lc.add, func(s string) { res.Notes = append(res.Notes, s) }, nil); err != nil {
		return logsResult{}, err
	}
	res.Records = lc.result()
	return res, nil
}

// logCollector keeps the records a logs call returns: those the filter keeps, at or after
// since, the last tail of them (tail 0: all).
type logCollector struct {
	filter logFilter
	since  float64
	tail   int
	lines  []logLine
}

func (c *logCollector) add(r kmsg.Record, source string) {
	if !c.filter.keep(r) || r.TS.Seconds() < c.since {
		return
	}
	c.lines = append(c.lines, newLogLine(r, source))
	if c.tail > 0 && len(c.lines) >= 2*c.tail { // the log may be long: hold about tail lines, not all
		c.lines = append(c.lines[:0], c.lines[len(c.lines)-c.tail:]...)
	}
}

// result is the records kept, never nil (an empty log is [] in JSON).
func (c *logCollector) result() []logLine {
	l := c.lines
	if c.tail > 0 && len(l) > c.tail {
		l = l[len(l)-c.tail:]
	}
	return append([]logLine{}, l...)
}

type execArgs struct {
	vmArg
	Command []string `json:"command" jsonschema:"the command and its arguments; a single element is a shell command line, such as \"dmesg | tail\""`
	Timeout string   `json:"timeout,omitempty" jsonschema:"how long the command may run, such as 30s (default 10m)"`
}

// execResult is the exec tool's result; output beyond maxExecOutput is cut off, and
// truncated says so.
type execResult struct {
	ExitCode  int           `json:"exit_code"`
	Stdout    string        `json:"stdout"`
	Stderr    string        `json:"stderr"`
	Truncated bool          `json:"truncated,omitempty"`
	Duration  time.Duration `json:"duration_ns"`
}

const (
	defaultExecTimeout = 10 * time.Minute
	maxExecOutput      = 1 << 20
)

func (a *app) execTool(ctx context.Context, in execArgs) (execResult, error) {
	if len(in.Command) == 0 || in.Command[0] == "" {
		return execResult{}, withCode(exitUsage, errors.New("command is empty; hint: pass the argument vector, such as [\"uname\", \"-r\"], or one shell command line, such as [\"dmesg | tail\"]"))
	}
	timeout, err := parseDurationArg("timeout", in.Timeout, defaultExecTimeout)
	if err != nil {
		return execResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := a.execCaptured(ctx, in.Command, strings.NewReader(""))
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return execResult{}, fmt.Errorf("%s did not finish within %s; hint: pass a longer timeout", strings.Join(in.Command, " "), timeout)
	}
	return res, err
}

// execCaptured runs args in the guest and keeps its output (up to maxExecOutput of each
// stream): `exec --json` and the exec tool.
func (a *app) execCaptured(ctx context.Context, args []string, stdin io.Reader) (execResult, error) {
	return capture(func(stdout, stderr io.Writer) (int, error) {
		return a.execInGuest(ctx, args, stdin, stdout, stderr)
	})
}

// capture runs run with what it writes kept, up to maxExecOutput of each stream, and timed.
func capture(run func(stdout, stderr io.Writer) (int, error)) (execResult, error) {
	start := time.Now()
	var stdout, stderr cappedBuffer
	code, err := run(&stdout, &stderr)
	if err != nil {
		return execResult{}, err
	}
	return execResult{ExitCode: code, Stdout: stdout.String(), Stderr: stderr.String(), Truncated: stdout.cut || stderr.cut, Duration: time.Since(start)}, nil
}

// cappedBuffer keeps the first maxExecOutput bytes written to it. Its buffer is a field, not
// embedded: an embedded bytes.Buffer's ReadFrom and WriteString would let io.Copy and
// io.WriteString write past the cap.
type cappedBuffer struct {
	buf bytes.Buffer
	cut bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := maxExecOutput - b.buf.Len(); len(p) > room {
		b.cut = true
		b.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *cappedBuffer) String() string { return b.buf.String() }
