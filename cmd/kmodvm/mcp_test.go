package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/kmodvm/kmodvm/images/ondisk"
	"github.com/kmodvm/kmodvm/provision/kmsg"
	"github.com/kmodvm/kmodvm/provision/ktap"
	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/provision/sandbox"
	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/remedy"
)

// These tests speak MCP to the server over the SDK's in-memory transport, with the app set
// up as `kmodvm mcp` sets it up (flags, kmodvm.yaml, KMODVM_HOME in a temp dir). libvirt is
// the nowhere URI (see cli_test.go); run and test get a fake VM through app.openVM.

// mcpApp is the app of `kmodvm mcp flags...` in a fresh directory holding files, and what
// it would write to stdout (the protocol's: nothing else may go there).
func mcpApp(t *testing.T, files map[string]string, flags ...string) (*app, *bytes.Buffer) {
	t.Helper()
	isolate(t)
	dir := t.TempDir()
	writeFiles(t, dir, files)
	t.Chdir(dir)
	var stdout, stderr bytes.Buffer
	root, a := newRootCmd(strings.NewReader(""), &stdout, &stderr)
	cmd, _, err := root.Find([]string{"mcp"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(flags); err != nil {
		t.Fatal(err)
	}
	if err := a.setup(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { t.Logf("server stderr:\n%s", stderr.String()) })
	return a, &stdout
}

// mcpClient connects a client to a's server over in-memory transports.
func mcpClient(t *testing.T, a *app, allowExec bool, opt *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	srv, err := a.newMCPServer(allowExec)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ct, st := mcp.NewInMemoryTransports()
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, opt).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cs.Close()
		ss.Wait()
	})
	return cs
}

// callTool calls a tool, failing the test on a protocol error (a tool's own error is a
// result).
func callTool(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("tools/call %s: %v", name, err)
	}
	return res
}

// remarshal decodes a tool's structured content into out.
func remarshal(content any, out any) error {
	raw, err := json.Marshal(content)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

func resultText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func TestMCPInitialize(t *testing.T) {
	a, _ := mcpApp(t, nil)
	cs := mcpClient(t, a, false, nil)
	init := cs.InitializeResult()
	if init.ServerInfo.Name != "kmodvm" || init.Capabilities.Tools == nil {
		t.Errorf("initialize: server %+v, tools capability %v", init.ServerInfo, init.Capabilities.Tools)
	}
	if !strings.Contains(init.Instructions, "dir") || !strings.Contains(init.Instructions, "up") {
		t.Errorf("instructions do not say to call up and pass dir:\n%s", init.Instructions)
	}
}

func TestMCPToolsList(t *testing.T) {
	tests := []struct {
		allowExec bool
		want      []string
	}{
		{false, []string{"bindings", "down", "logs", "run", "status", "test", "up"}},
		{true, []string{"bindings", "down", "exec", "logs", "run", "status", "test", "up"}},
	}
	// The arguments each tool must take, named like the flags of its command.
	wantArgs := map[string][]string{
		"up":       {"name", "accel", "port"},
		"status":   {"name"},
		"run":      {"name", "dir", "param", "build", "timeout", "keep", "reload"},
		"test":     {"name", "dir", "param", "build", "timeout", "filter"},
		"logs":     {"name", "level", "module", "tail", "since"},
		"down":     {"name", "timeout"},
		"exec":     {"name", "command", "timeout"},
		"bindings": {"name", "query", "regex"},
	}
	// The arguments without a default.
	required := map[string][]string{"exec": {"command"}, "bindings": {"query"}}
	for _, tt := range tests {
		a, _ := mcpApp(t, nil)
		cs := mcpClient(t, a, tt.allowExec, nil)
		res, err := cs.ListTools(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tool := range res.Tools {
			names = append(names, tool.Name)
			schema, _ := json.Marshal(tool.InputSchema)
			var in struct {
				Properties map[string]struct {
					Description string `json:"description"`
				} `json:"properties"`
				Required             []string `json:"required"`
				AdditionalProperties any      `json:"additionalProperties"`
			}
			if err := json.Unmarshal(schema, &in); err != nil {
				t.Fatalf("%s: input schema %s: %v", tool.Name, schema, err)
			}
			var props []string
			for p, d := range in.Properties {
				props = append(props, p)
				if d.Description == "" {
					t.Errorf("%s: argument %s has no description", tool.Name, p)
				}
			}
			slices.Sort(props)
			want := slices.Sorted(slices.Values(wantArgs[tool.Name]))
			if !slices.Equal(props, want) {
				t.Errorf("%s takes %v, want %v", tool.Name, props, want)
			}
			if wantRequired := required[tool.Name]; !slices.Equal(in.Required, wantRequired) {
				t.Errorf("%s requires %v, want %v", tool.Name, in.Required, required[tool.Name])
			}
			if in.AdditionalProperties != false {
				t.Errorf("%s accepts arguments it does not know (additionalProperties %v)", tool.Name, in.AdditionalProperties)
			}
			if tool.OutputSchema == nil || tool.Description == "" {
				t.Errorf("%s: no output schema or no description", tool.Name)
			}
		}
		slices.Sort(names)
		if !slices.Equal(names, tt.want) {
			t.Errorf("allow exec %v: tools %v, want %v", tt.allowExec, names, tt.want)
		}
	}
}

// TestMCPBindings: the bindings tool returns what bindings --json prints, for a bound name
// and for one that is not (not an error: bound is false and missing says how to bind it);
// a query that is no name is an error with the hint.
func TestMCPBindings(t *testing.T) {
	entry := bindingsVM(t, true)
	vms := filepath.Join(os.Getenv("KMODVM_HOME"), "state", "vms")
	a, _ := mcpApp(t, nil) // a home of its own: the VM moves there, its kernel stays
	if _, err := ondisk.CopyTree(context.Background(), vms, filepath.Join(os.Getenv("KMODVM_HOME"), "state", "vms"), ondisk.CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	cs := mcpClient(t, a, false, nil)

	res := callTool(t, cs, "bindings", map[string]any{"query": "refcount_inc"})
	var got bindingsJSON
	if err := remarshal(res.StructuredContent, &got); err != nil || res.IsError {
		t.Fatalf("bindings refcount_inc: %v, error result %v: %s", err, res.IsError, resultText(res))
	}
	if got.Schema != schemaBindings || !got.Bound || len(got.Items) != 1 || got.Items[0].Helper != "rust_helper_refcount_inc" ||
		!strings.HasPrefix(got.Items[0].Path, entry) || got.VM != "kmodvm" {
		t.Errorf("bindings refcount_inc = %+v", got)
	}

	res = callTool(t, cs, "bindings", map[string]any{"query": "iio_dev"})
	got = bindingsJSON{}
	if err := remarshal(res.StructuredContent, &got); err != nil || res.IsError {
		t.Fatalf("bindings iio_dev: %v, error result %v: %s", err, res.IsError, resultText(res))
	}
	if got.Bound || got.Missing == nil || got.Missing.Config != "kernel:\n  bindings: [linux/iio/iio.h]\n  fragments: [\"CONFIG_IIO=y\"]\n" {
		t.Errorf("bindings iio_dev = %+v, missing %+v; want not bound, with the kmodvm.yaml lines", got, got.Missing)
	}

	res = callTool(t, cs, "bindings", map[string]any{"query": "not a name"})
	if !res.IsError || !strings.Contains(resultText(res), "hint: pass --regex") {
		t.Errorf("bindings of no name: error %v: %s", res.IsError, resultText(res))
	}

	// kmodvm mcp -n agent before agent's first up: the kernel kmodvm.yaml selects is asked
	// for (here: not built), not a VM that does not exist yet; a name given to the tool
	// must be a VM.
	a, _ = mcpApp(t, nil, "-n", "agent")
	cs = mcpClient(t, a, false, nil)
	res = callTool(t, cs, "bindings", map[string]any{"query": "kfree"})
	if !res.IsError || !strings.Contains(resultText(res), "is not built; hint: `kmodvm kernel build` builds it") {
		t.Errorf("bindings under -n agent with no VM: error %v: %s", res.IsError, resultText(res))
	}
	for _, flags := range [][]string{{"-n", "agent"}, nil} {
		a, _ = mcpApp(t, nil, flags...)
		cs = mcpClient(t, a, false, nil)
		res = callTool(t, cs, "bindings", map[string]any{"query": "kfree", "name": "other"})
		if !res.IsError || !strings.Contains(resultText(res), `there is no VM named "other"`) {
			t.Errorf("mcp %v, bindings of VM other: error %v: %s", flags, res.IsError, resultText(res))
		}
	}
}

// TestMCPToolErrors: what goes wrong is a tool result with isError and the message and hint
// the CLI prints, and nothing reaches stdout.
func TestMCPToolErrors(t *testing.T) {
	tests := []struct {
		name      string
		tool      string
		args      map[string]any
		allowExec bool
		want      []string
	}{
		{name: "run on a missing dir", tool: "run", args: map[string]any{"dir": "nope"},
			want: []string{"module directory nope does not exist", "hint:"}},
		{name: "test on a dir without Kbuild", tool: "test", args: map[string]any{"dir": "."},
			want: []string{"has no Kbuild or Makefile", "hint:"}},
		{name: "run with a bad param", tool: "run", args: map[string]any{"dir": "m", "param": []string{"debug"}},
			want: []string{`module parameter "debug"`, "hint:"}},
		{name: "run with a bad build", tool: "run", args: map[string]any{"dir": "m", "build": "bogus"},
			want: []string{`"bogus" is not one of auto, guest, host`, "hint:"}},
		{name: "run with a negative reload", tool: "run", args: map[string]any{"dir": "m", "reload": -1},
			want: []string{"reload -1", "hint:"}},
		{name: "run with a bad timeout", tool: "run", args: map[string]any{"dir": "m", "timeout": "soon"},
			want: []string{`timeout "soon" is not a duration`, "hint:"}},
		{name: "test with a bad filter", tool: "test", args: map[string]any{"dir": "m", "filter": "a b"},
			want: []string{"is not a KUnit glob", "hint:"}},
		{name: "status without libvirtd", tool: "status",
			want: []string{"libvirtd is not running", "hint:"}},
		{name: "status of a VM with a bad name", tool: "status", args: map[string]any{"name": "Bad_Name"},
			want: []string{`"Bad_Name" is not a valid VM name`, "hint:"}},
		{name: "up with a bad accel", tool: "up", args: map[string]any{"accel": "hyperv"},
			want: []string{"vm.accel", "hyperv"}},
		{name: "up without libvirtd", tool: "up", args: map[string]any{"name": "other"},
			want: []string{"libvirtd is not running", "hint:"}},
		{name: "down with a bad timeout", tool: "down", args: map[string]any{"timeout": "-3s"},
			want: []string{`timeout "-3s" is not a duration`, "hint:"}},
		{name: "down without libvirtd", tool: "down",
			want: []string{"libvirtd is not running", "hint:"}},
		{name: "logs with a bad level", tool: "logs", args: map[string]any{"level": "loud"},
			want: []string{`unknown kernel log level "loud"`, "hint:"}},
		{name: "logs with a negative tail", tool: "logs", args: map[string]any{"tail": -1},
			want: []string{"tail -1", "hint:"}},
		{name: "logs without libvirtd", tool: "logs", args: map[string]any{"tail": 10},
			want: []string{"libvirtd is not running", "hint:"}},
		{name: "exec of nothing", tool: "exec", allowExec: true, args: map[string]any{"command": []string{}},
			want: []string{"command is empty", "hint:"}},
		{name: "exec without libvirtd", tool: "exec", allowExec: true, args: map[string]any{"command": []string{"uname", "-r"}},
			want: []string{"libvirtd is not running", "hint:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, stdout := mcpApp(t, map[string]string{"m/Kbuild": helloKbuild}, "--uri", nowhereURI(t))
			cs := mcpClient(t, a, tt.allowExec, nil)
			res := callTool(t, cs, tt.tool, tt.args)
			wantErrorResult(t, res, tt.want)
			if stdout.Len() != 0 {
				t.Errorf("the tool wrote to stdout, the protocol's stream:\n%s", stdout)
			}
		})
	}
}

// TestMCPArgumentsValidated: arguments the schema does not allow never reach a command.
func TestMCPArgumentsValidated(t *testing.T) {
	tests := []struct {
		tool string
		args map[string]any
		want string
	}{
		{"run", map[string]any{"dirr": "m"}, "dirr"},
		{"run", map[string]any{"dir": 3}, "dir"},
		{"run", map[string]any{"reload": "twice"}, "reload"},
		{"run", map[string]any{"param": "a=1"}, "param"},
		{"test", map[string]any{"keep": true}, "keep"}, // run's flag, not test's
		{"logs", map[string]any{"follow": true}, "follow"},
		{"status", map[string]any{"name": 1}, "name"},
	}
	for _, tt := range tests {
		a, stdout := mcpApp(t, map[string]string{"m/Kbuild": helloKbuild}, "--uri", nowhereURI(t))
		a.openVM = func(context.Context, string, bool) (moduleVM, error) {
			t.Errorf("%s %v reached the VM", tt.tool, tt.args)
			return moduleVM{}, errors.New("no VM in this test")
		}
		cs := mcpClient(t, a, false, nil)
		res := callTool(t, cs, tt.tool, tt.args)
		text := resultText(res)
		if !res.IsError || !strings.Contains(text, "validating") || !strings.Contains(text, tt.want) {
			t.Errorf("%s %v: isError %v, %q; want a validation error naming %s", tt.tool, tt.args, res.IsError, text, tt.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("stdout: %s", stdout)
		}
	}
}

// TestMCPExecNeedsOptIn: without --allow-exec there is no exec tool to call.
func TestMCPExecNeedsOptIn(t *testing.T) {
	a, _ := mcpApp(t, nil, "--uri", nowhereURI(t))
	cs := mcpClient(t, a, false, nil)
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "exec", Arguments: map[string]any{"command": []string{"reboot"}}})
	if err == nil {
		t.Fatalf("exec without --allow-exec was served: isError %v, %s", res.IsError, resultText(res))
	}
	if !strings.Contains(err.Error(), "exec") {
		t.Errorf("the error does not name the unknown tool: %v", err)
	}
}

// fakeRunner is the runner of a fake VM: it says what it does on the progress line, records
// the options it got and returns result (or err).
type fakeRunner struct {
	mu     sync.Mutex
	opts   []module.Options
	result module.Result
	err    error
	closed int
}

func (f *fakeRunner) Run(_ context.Context, opt module.Options) (*module.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opts = append(f.opts, opt)
	opt.Status("building " + filepath.Base(opt.Source.Dir) + " on the " + opt.Where)
	if f.err != nil {
		return nil, f.err
	}
	res := f.result
	res.Module = opt.Source.Dir
	res.Modules = opt.Source.Modules
	return &res, nil
}

func (f *fakeRunner) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
	return nil
}

// fakeVM gives a's runs a VM running under TCG with r as its runner; it records the names
// of the VMs the runs opened and whether each asked to start the VM when it was not running,
// and counts how often a run released one (lock, connection).
type fakeVM struct {
	mu       sync.Mutex
	opened   []string
	ups      []bool
	released int
}

func newFakeVM(a *app, r moduleRunner) *fakeVM {
	f := &fakeVM{}
	a.openVM = func(_ context.Context, name string, up bool) (moduleVM, error) {
		f.mu.Lock()
		f.opened = append(f.opened, name)
		f.ups = append(f.ups, up)
		f.mu.Unlock()
		in := &sandbox.Instance{Name: name, Accel: vm.AccelTCG, KernelRelease: "6.12.1-kmodvm",
			ConfigHash: "c0ffee", Toolchain: map[string]string{"rustc": "rustc 1.85.0"}}
		return moduleVM{in: in, runner: r, release: func() {
			r.Close()
			f.mu.Lock()
			f.released++
			f.mu.Unlock()
		}}, nil
	}
	return f
}

func TestMCPRun(t *testing.T) {
	a, stdout := mcpApp(t, map[string]string{"rust-hello/Kbuild": "obj-m := rust_hello.o\n"}, "--uri", nowhereURI(t), "-n", "dev")
	dir, _ := filepath.Abs("rust-hello")
	diag := "error[E0308]: mismatched types\n --> " + filepath.Join(dir, "rust_hello.rs") + ":12:5\n"
	tests := []struct {
		name     string
		args     map[string]any
		result   module.Result
		err      error
		wantOpt  module.Options
		wantCode int
		wantText []string // in the text of an error result
	}{
		{name: "ok", args: map[string]any{"dir": dir, "param": []string{"greetings=2"}},
			result: module.Result{Build: module.BuildResult{Where: "host", OK: true},
				Steps: []module.Step{{Action: "load", Module: "rust_hello", Iteration: 1, OK: true,
					Log: []string{"[   12.345678] <info> rust_hello: Hello from Rust! (1/2)"}}},
				Verdict: module.VerdictOK, Title: "ok"},
			wantOpt:  module.Options{Params: []string{"greetings=2"}, Where: module.BuildHost},
			wantCode: exitOK},
		{name: "build failed, diagnostics with host paths", args: map[string]any{"dir": dir, "build": "guest", "reload": 3, "keep": true, "timeout": "45s"},
			result: module.Result{Build: module.BuildResult{Where: "guest", OK: false, Output: diag},
				Verdict: module.VerdictBuildFailed, Title: "mismatched types"},
			wantOpt:  module.Options{Where: module.BuildGuest, Reload: 3, Keep: true, Timeout: 45 * time.Second},
			wantCode: exitBuildFailed},
		{name: "the kernel's problem is a verdict, not an error", args: map[string]any{"dir": dir, "param": []string{}, "name": "other"},
			result: module.Result{Build: module.BuildResult{OK: true}, Verdict: module.VerdictKernelProblem,
				Steps: []module.Step{{Action: "load", Module: "rust_hello", Findings: []kmsg.Finding{{Class: "WARNING", Title: "WARNING in rust_hello"}}}}},
			wantOpt:  module.Options{Params: []string{}, Where: module.BuildHost},
			wantCode: exitKernelIssue},
		{name: "kmodvm's failure is an error with the hint", args: map[string]any{"dir": dir},
			err:      &remedy.Error{Err: errors.New("VM dev is not running"), Do: []remedy.Action{remedy.StartVM}},
			wantText: []string{"VM dev is not running", "hint: `kmodvm up -n dev` starts it"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &fakeRunner{result: tt.result, err: tt.err}
			fv := newFakeVM(a, r)
			var mu sync.Mutex
			var progress []string
			cs := mcpClient(t, a, false, &mcp.ClientOptions{ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
				mu.Lock()
				defer mu.Unlock()
				progress = append(progress, req.Params.Message)
			}})
			params := &mcp.CallToolParams{Name: "run", Arguments: tt.args}
			params.SetProgressToken("run-1")
			res, err := cs.CallTool(context.Background(), params)
			if err != nil {
				t.Fatal(err)
			}
			wantVM := "dev" // -n of kmodvm mcp
			if n, ok := tt.args["name"].(string); ok {
				wantVM = n
			}
			if !slices.Equal(fv.opened, []string{wantVM}) || fv.released != 1 {
				t.Errorf("opened VMs %v and released %d times, want [%s] once", fv.opened, fv.released, wantVM)
			}
			// An agent's run starts the VM when it is not running, as a person's does.
			if !slices.Equal(fv.ups, []bool{true}) {
				t.Errorf("the run opened its VM with up %v, want [true]", fv.ups)
			}
			if tt.err != nil {
				wantErrorResult(t, res, tt.wantText)
				return
			}
			if res.IsError {
				t.Fatalf("error result: %s", resultText(res))
			}
			var got runJSON
			raw, _ := json.Marshal(res.StructuredContent)
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatalf("structured content %s: %v", raw, err)
			}
			if got.ExitCode != tt.wantCode || got.Verdict != tt.result.Verdict || got.KernelRelease != "6.12.1-kmodvm" || got.Toolchain["rustc"] == "" {
				t.Errorf("result: exit_code %d verdict %q kernel %q toolchain %v; want %d %q", got.ExitCode, got.Verdict, got.KernelRelease, got.Toolchain, tt.wantCode, tt.result.Verdict)
			}
			if got.Module != dir || !slices.Equal(got.Modules, []string{"rust_hello"}) {
				t.Errorf("module %q %v, want %q [rust_hello]", got.Module, got.Modules, dir)
			}
			if got.Build.Output != tt.result.Build.Output || len(got.Steps) != len(tt.result.Steps) {
				t.Errorf("build output %q and %d steps, want %q and %d", got.Build.Output, len(got.Steps), tt.result.Build.Output, len(tt.result.Steps))
			}
			// The text content is the same JSON, for clients that read only text.
			if text := resultText(res); !json.Valid([]byte(text)) || !strings.Contains(text, `"verdict"`) {
				t.Errorf("text content is not the result's JSON: %s", text)
			}
			opt := r.opts[0]
			if !slices.Equal(opt.Params, tt.wantOpt.Params) || (opt.Params == nil) != (tt.wantOpt.Params == nil) ||
				opt.Where != tt.wantOpt.Where || opt.Reload != tt.wantOpt.Reload || opt.Keep != tt.wantOpt.Keep || opt.Tests {
				t.Errorf("runner options %+v, want %+v", opt, tt.wantOpt)
			}
			wantTimeout := tt.wantOpt.Timeout
			if wantTimeout == 0 {
				wantTimeout = a.cfg.Module.Timeout
			}
			if opt.Timeout != wantTimeout {
				t.Errorf("timeout %v, want %v", opt.Timeout, wantTimeout)
			}
			waitFor(t, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return slices.Contains(progress, "building rust-hello on the "+opt.Where)
			}, func() string { return "progress notifications: " + strings.Join(progress, " | ") })
			if stdout.Len() != 0 {
				t.Errorf("stdout: %s", stdout)
			}
		})
	}
}

// TestMCPTest: the test tool runs the module's KUnit tests and returns each one.
func TestMCPTest(t *testing.T) {
	a, _ := mcpApp(t, map[string]string{"m/Kbuild": "obj-m := rust_hello.o\n"}, "--uri", nowhereURI(t))
	r := &fakeRunner{result: module.Result{Build: module.BuildResult{OK: true},
		KUnit: []module.SuiteResult{{Module: "rust_hello", Iteration: 1, Suite: ktap.Suite{Name: "rust_hello", Status: ktap.Fail, Tests: []ktap.Test{
			{Name: "adds", Number: 1, Status: ktap.Pass},
			{Name: "divides", Number: 2, Status: ktap.Fail, Diagnostics: []string{"# divides: ASSERTION FAILED at /src/m/lib.rs:20"},
				Subtests: []ktap.Test{{Name: "by zero", Number: 1, Status: ktap.Fail}}},
		}}}},
		Tests:   module.TestCounts{Passed: 1, Failed: 1},
		Verdict: module.VerdictTestsFailed, Title: "1 of 2 tests failed"}}
	fv := newFakeVM(a, r)
	cs := mcpClient(t, a, false, nil)
	res := callTool(t, cs, "test", map[string]any{"dir": "m", "filter": "rust_hello.div*"})
	if res.IsError {
		t.Fatalf("error result: %s", resultText(res))
	}
	var got runJSON
	raw, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.ExitCode != exitTestsFailed || got.Tests.Failed != 1 || len(got.KUnit) != 1 || len(got.KUnit[0].Tests) != 2 ||
		len(got.KUnit[0].Tests[1].Subtests) != 1 || got.KUnit[0].Tests[1].Diagnostics[0] == "" {
		t.Errorf("test result: %s", raw)
	}
	if opt := r.opts[0]; !opt.Tests || opt.Filter != "rust_hello.div*" || opt.Keep {
		t.Errorf("runner options %+v, want Tests and the filter", opt)
	}
	if !slices.Equal(fv.opened, []string{"kmodvm"}) || fv.released != 1 {
		t.Errorf("opened VMs %v and released %d times, want [kmodvm] once", fv.opened, fv.released)
	}
}

// TestMCPStdio runs `kmodvm mcp` as main does, on pipes: stdout carries only JSON-RPC,
// stderr none of it, and the server ends cleanly when the client hangs up.
func TestMCPStdio(t *testing.T) {
	isolate(t)
	t.Chdir(t.TempDir())
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	var stderr lockedBuffer
	done := make(chan int)
	go func() {
		code := run(context.Background(), []string{"mcp", "--uri", nowhereURI(t)}, inR, outW, &stderr)
		outW.Close()
		done <- code
	}()
	var wire lockedBuffer
	client := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	cs, err := client.Connect(context.Background(), &mcp.IOTransport{Reader: io.NopCloser(io.TeeReader(outR, &wire)), Writer: inW}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := callTool(t, cs, "status", nil)
	if !res.IsError || !strings.Contains(resultText(res), "hint:") {
		t.Errorf("status without libvirtd: %s", resultText(res))
	}
	cs.Close()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("kmodvm mcp exited %d after the client hung up, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("kmodvm mcp did not end when its stdin closed")
	}
	sc := bufio.NewScanner(strings.NewReader(wire.String()))
	n := 0
	for sc.Scan() {
		var msg struct {
			JSONRPC string `json:"jsonrpc"`
		}
		if err := json.Unmarshal(sc.Bytes(), &msg); err != nil || msg.JSONRPC != "2.0" {
			t.Errorf("stdout line is not JSON-RPC: %q", sc.Text())
		}
		n++
	}
	if n < 2 {
		t.Errorf("stdout held %d messages, want the initialize and tools/call responses", n)
	}
	if strings.Contains(stderr.String(), "jsonrpc") {
		t.Errorf("protocol traffic on stderr:\n%s", stderr.String())
	}
}

func TestLogCollector(t *testing.T) {
	recs := []kmsg.Record{
		{Seq: 1, Level: 6, TS: 1 * time.Second, Text: "booted"},
		{Seq: 2, Level: 6, TS: 2 * time.Second, Text: "rust_hello: Hello from Rust!"},
		{Seq: 3, Level: 4, TS: 3 * time.Second, Text: "c_hello: careful"},
		{Seq: 4, Level: 6, TS: 4 * time.Second, Text: "rust_hello: Goodbye from Rust"},
		{Seq: 5, Level: 3, TS: 5 * time.Second, Text: "rust_hello: failed"},
	}
	tests := []struct {
		name  string
		level string
		mod   string
		since float64
		tail  int
		want  []uint64
	}{
		{name: "all", want: []uint64{1, 2, 3, 4, 5}},
		{name: "tail", tail: 2, want: []uint64{4, 5}},
		{name: "tail 1, kept short while reading", tail: 1, want: []uint64{5}},
		{name: "tail longer than the log", tail: 9, want: []uint64{1, 2, 3, 4, 5}},
		{name: "since", since: 3, want: []uint64{3, 4, 5}},
		{name: "since between records", since: 3.5, want: []uint64{4, 5}},
		{name: "module then tail", mod: "rust_hello", tail: 2, want: []uint64{4, 5}},
		{name: "module since", mod: "rust_hello", since: 2, want: []uint64{2, 4, 5}},
		{name: "level", level: "warn", want: []uint64{3, 5}},
		{name: "since after the last", since: 9, want: []uint64{}},
	}
	for _, tt := range tests {
		f, err := newLogFilter(tt.level, tt.mod)
		if err != nil {
			t.Fatal(err)
		}
		c := logCollector{filter: f, since: tt.since, tail: tt.tail}
		for _, r := range recs {
			c.add(r, "kmsg")
		}
		got := []uint64{}
		for _, l := range c.result() {
			got = append(got, l.Seq)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: records %v, want %v", tt.name, got, tt.want)
		}
	}
}

// waitFor waits up to 10 s for cond (notifications arrive apart from the response).
func waitFor(t *testing.T, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("waited 10 s for: %s", what())
			return
		}
		<-tick.C
	}
}

// wantErrorResult checks that res is a tool error whose text has each of want.
func wantErrorResult(t *testing.T, res *mcp.CallToolResult, want []string) {
	t.Helper()
	text := resultText(res)
	if !res.IsError {
		t.Errorf("not an error result: %s", text)
	}
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("error %q lacks %q", text, w)
		}
	}
}
