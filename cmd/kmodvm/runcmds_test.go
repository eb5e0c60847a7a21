package main

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/provision/kmsg"
	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/vm"
)

func TestCheckParams(t *testing.T) {
	tests := []struct {
		params []string
		bad    *string // the parameter the error must name; nil = no error
	}{
		{params: nil},
		{params: []string{"greetings=2"}},
		{params: []string{"a=1", "b="}},
		{params: []string{"msg=hello world"}},                        // spaces in the value: quoted for the kernel
		{params: []string{"list=1,2,3", "x=a=b"}},                    // only the first = separates
		{params: []string{"dyndbg=+p", "p.q=\"x\""}},                 // a value in double quotes: the kernel's own syntax
		{params: []string{`msg=say "hi"`}, bad: ptr(`msg=say "hi"`)}, // no escape for a quote in the kernel
		{params: []string{`msg="a`}, bad: ptr(`msg="a`)},
		{params: []string{"debug"}, bad: ptr("debug")},
		{params: []string{"=1"}, bad: ptr("=1")},
		{params: []string{""}, bad: ptr("")},
		{params: []string{"ok=1", "a b=1"}, bad: ptr("a b=1")},
		{params: []string{"a\tb=1"}, bad: ptr("a\tb=1")},
		{params: []string{"a'=1"}, bad: ptr("a'=1")},
		{params: []string{`a"=1`}, bad: ptr(`a"=1`)},
		{params: []string{"$(reboot)=1"}, bad: ptr("$(reboot)=1")},
		{params: []string{"a;b=1"}, bad: ptr("a;b=1")},
		{params: []string{"a`b=1"}, bad: ptr("a`b=1")},
		{params: []string{`a\b=1`}, bad: ptr(`a\b=1`)},
		{params: []string{"a=1\nrm -rf /"}}, // a newline is white space: quoted for the kernel, never run
		{params: []string{"a=x\r\ny"}},
		{params: []string{"a=\x00"}, bad: ptr("a=\x00")},
	}
	for _, tt := range tests {
		err := checkParams(tt.params)
		switch {
		case tt.bad == nil && err != nil:
			t.Errorf("checkParams(%q) = %v, want nil", tt.params, err)
		case tt.bad != nil && err == nil:
			t.Errorf("checkParams(%q) = nil, want an error naming %q", tt.params, *tt.bad)
		case tt.bad != nil:
			if !strings.Contains(err.Error(), strconv.Quote(*tt.bad)) {
				t.Errorf("checkParams(%q) = %q, does not name %q", tt.params, err, *tt.bad)
			}
			if !strings.Contains(err.Error(), "hint:") {
				t.Errorf("checkParams(%q) = %q, has no hint", tt.params, err)
			}
		}
	}
}

func ptr(s string) *string { return &s }

func TestBuildLocation(t *testing.T) {
	tests := []struct {
		where   string
		accel   vm.Accel
		want    string
		wantErr bool
	}{
		{where: "", accel: vm.AccelKVM, want: module.BuildGuest},
		{where: "", accel: vm.AccelTCG, want: module.BuildHost},
		{where: "auto", accel: vm.AccelKVM, want: module.BuildGuest},
		{where: "auto", accel: vm.AccelTCG, want: module.BuildHost},
		{where: "auto", accel: "", want: module.BuildHost}, // unknown accel: the host build is never slower
		{where: "guest", accel: vm.AccelTCG, want: module.BuildGuest},
		{where: "host", accel: vm.AccelKVM, want: module.BuildHost},
		{where: "Host", accel: vm.AccelKVM, wantErr: true},
		{where: "remote", accel: vm.AccelTCG, wantErr: true},
	}
	for _, tt := range tests {
		got, err := buildLocation(tt.where, tt.accel)
		if tt.wantErr {
			if err == nil {
				t.Errorf("buildLocation(%q, %q) = %q, want an error", tt.where, tt.accel, got)
			} else if !strings.Contains(err.Error(), tt.where) || !strings.Contains(err.Error(), "hint:") {
				t.Errorf("buildLocation(%q, %q) error %q does not name the value or has no hint", tt.where, tt.accel, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("buildLocation(%q, %q) = %q, %v; want %q", tt.where, tt.accel, got, err, tt.want)
		}
	}
}

const nullDeref = "BUG: kernel NULL pointer dereference, address: 0000000000000000 in hello_init [hello]"

func TestPrintRun(t *testing.T) {
	tests := []struct {
		name string
		res  module.Result
		want string
	}{
		{
			name: "ok",
			res: module.Result{
				Sync:  module.SyncResult{Summary: "2 changed, 0 deleted, 0.0 s"},
				Build: module.BuildResult{Where: "host", OK: true, Output: "  CC [M]  hello.o\n", Duration: 3100 * time.Millisecond},
				Steps: []module.Step{
					{Action: "load", Module: "rust_hello", Iteration: 1, OK: true, Duration: 410 * time.Millisecond,
						Log: []string{"[   12.345678] <info> rust_hello: Hello from Rust! (1/2)", "[   12.345702] <info> rust_hello: Hello from Rust! (2/2)"}},
					{Action: "unload", Module: "rust_hello", Iteration: 1, OK: true, Duration: 220 * time.Millisecond,
						Log: []string{"[   12.812345] <info> rust_hello: Goodbye from Rust"}},
				},
				Verdict: module.VerdictOK, Title: "ok",
			},
			want: `sync:    2 changed, 0 deleted, 0.0 s
build:   host, ok (3.1 s)
load rust_hello (#1): ok (0.41 s)
  [   12.345678] <info> rust_hello: Hello from Rust! (1/2)
  [   12.345702] <info> rust_hello: Hello from Rust! (2/2)
unload rust_hello (#1): ok (0.22 s)
  [   12.812345] <info> rust_hello: Goodbye from Rust
verdict: ok — ok
`,
		},
		{
			name: "build failed",
			res: module.Result{
				Sync: module.SyncResult{Summary: "1 changed, 0 deleted, 0.0 s"},
				Build: module.BuildResult{Where: "guest", OK: false, Duration: 1250 * time.Millisecond,
					Output: "error[E0425]: cannot find value `greetings` in this scope\n --> /home/dev/mod/hello.rs:12:9\n\n"},
				Verdict: module.VerdictBuildFailed, Title: "module did not build",
			},
			want: "sync:    1 changed, 0 deleted, 0.0 s\n" +
				"build:   guest, FAILED (1.2 s)\n" +
				"error[E0425]: cannot find value `greetings` in this scope\n" +
				" --> /home/dev/mod/hello.rs:12:9\n" +
				"verdict: build-failed — module did not build\n",
		},
		{
			name: "load failed",
			res: module.Result{
				Sync:  module.SyncResult{Summary: "0 changed, 0 deleted, 0.0 s"},
				Build: module.BuildResult{Where: "host", OK: true, Duration: 500 * time.Millisecond},
				Steps: []module.Step{
					{Action: "load", Module: "hello", Iteration: 1, OK: false, Error: "insmod: ERROR: could not insert module: Invalid parameters (hello: Unknown parameter `bogus')",
						Duration: 30 * time.Millisecond, Log: []string{"[    7.000000] <warn> hello: Unknown parameter `bogus'"}},
				},
				Verdict: module.VerdictLoadFailed, Title: "load hello failed: insmod: ERROR: could not insert module: Invalid parameters",
			},
			want: "sync:    0 changed, 0 deleted, 0.0 s\n" +
				"build:   host, ok (0.5 s)\n" +
				"load hello (#1): FAILED: insmod: ERROR: could not insert module: Invalid parameters (hello: Unknown parameter `bogus') (0.03 s)\n" +
				"  [    7.000000] <warn> hello: Unknown parameter `bogus'\n" +
				"verdict: load-failed — load hello failed: insmod: ERROR: could not insert module: Invalid parameters\n",
		},
		{
			name: "kernel problem, guest restarted",
			res: module.Result{
				Sync:  module.SyncResult{Summary: "1 changed, 0 deleted, 0.1 s"},
				Build: module.BuildResult{Where: "host", OK: true, Duration: 2 * time.Second},
				Steps: []module.Step{
					{Action: "load", Module: "hello", Iteration: 2, OK: false, Error: "the guest crashed", Crashed: true, Duration: 1500 * time.Millisecond,
						Log: []string{"[    5.100000] <alert> BUG: kernel NULL pointer dereference, address: 0000000000000000", "[    5.100100] <emerg> Kernel panic - not syncing: Fatal exception"},
						Findings: []kmsg.Finding{
							{Class: kmsg.ClassOops, Title: nullDeref},
							{Class: kmsg.ClassPanic, Title: "Kernel panic - not syncing: Fatal exception"},
						}},
				},
				Restart: true,
				Verdict: module.VerdictKernelProblem, Title: nullDeref,
			},
			want: "sync:    1 changed, 0 deleted, 0.1 s\n" +
				"build:   host, ok (2.0 s)\n" +
				"load hello (#2): FAILED: the guest crashed (1.50 s)\n" +
				"  [    5.100000] <alert> BUG: kernel NULL pointer dereference, address: 0000000000000000\n" +
				"  [    5.100100] <emerg> Kernel panic - not syncing: Fatal exception\n" +
				"  !! oops: " + nullDeref + "\n" +
				"  !! panic: Kernel panic - not syncing: Fatal exception\n" +
				"guest:   restarted after the crash; it is ready for the next run\n" +
				"verdict: kernel-problem — " + nullDeref + "\n",
		},
		{
			name: "warning on a load that succeeded",
			res: module.Result{
				Sync:  module.SyncResult{Summary: "0 changed, 0 deleted, 0.0 s"},
				Build: module.BuildResult{Where: "guest", OK: true, Duration: 4 * time.Second},
				Steps: []module.Step{
					{Action: "load", Module: "warn_once", Iteration: 1, OK: true, Duration: 100 * time.Millisecond,
						Log:      []string{"[    3.000000] <warn> WARNING: CPU: 0 PID: 95 at /home/dev/warn/warn.c:9 warn_init+0x5/0x10 [warn_once]"},
						Findings: []kmsg.Finding{{Class: kmsg.ClassWarning, Title: "WARNING in warn_init (/home/dev/warn/warn.c:9)"}}},
				},
				Verdict: module.VerdictKernelProblem, Title: "WARNING in warn_init (/home/dev/warn/warn.c:9)",
			},
			want: "sync:    0 changed, 0 deleted, 0.0 s\n" +
				"build:   guest, ok (4.0 s)\n" +
				"load warn_once (#1): ok (0.10 s)\n" +
				"  [    3.000000] <warn> WARNING: CPU: 0 PID: 95 at /home/dev/warn/warn.c:9 warn_init+0x5/0x10 [warn_once]\n" +
				"  !! warning: WARNING in warn_init (/home/dev/warn/warn.c:9)\n" +
				"verdict: kernel-problem — WARNING in warn_init (/home/dev/warn/warn.c:9)\n",
		},
		{
			name: "log buffer overwritten during the load",
			res: module.Result{
				Sync:  module.SyncResult{Summary: "0 changed, 0 deleted, 0.0 s"},
				Build: module.BuildResult{Where: "host", OK: true, Duration: time.Second},
				Steps: []module.Step{
					{Action: "load", Module: "spam", Iteration: 1, OK: true, Duration: 200 * time.Millisecond, Lost: 1234,
						Log: []string{"[    4.000000] <info> spam: line 1235/1236", "[    4.000000] <info> spam: line 1236/1236"}},
				},
				Verdict: module.VerdictOK, Title: "ok",
			},
			want: "sync:    0 changed, 0 deleted, 0.0 s\n" +
				"build:   host, ok (1.0 s)\n" +
				"load spam (#1): ok (0.20 s)\n" +
				"  [    4.000000] <info> spam: line 1235/1236\n" +
				"  [    4.000000] <info> spam: line 1236/1236\n" +
				"  !! 1234 kernel log records were overwritten in the guest (its log buffer was full) before kmodvm read them; the verdict did not see them\n" +
				"verdict: ok — ok\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			printRun(&app{stdout: &out}, &tt.res, false)
			if got := out.String(); got != tt.want {
				t.Errorf("printRun output:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// TestRunJSON: `run --json` is the result's fields, flattened, plus the kernel and the exit
// code a script would otherwise have to derive from the verdict.
func TestRunJSON(t *testing.T) {
	res := &module.Result{
		Module: "/home/dev/mod", Modules: []string{"hello"},
		Build:   module.BuildResult{Where: "host", OK: true},
		Steps:   []module.Step{{Action: "load", Module: "hello", Iteration: 1, Findings: []kmsg.Finding{{Class: kmsg.ClassOops, Title: nullDeref}}}},
		Verdict: module.VerdictKernelProblem, Title: nullDeref,
	}
	data, err := json.Marshal(runJSON{Result: res, KernelRelease: "7.2.13-kmodvm-1a2b3c4d", ConfigHash: "abc", ExitCode: verdictExitCode(res.Verdict)})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{
		"module_dir": "/home/dev/mod", "verdict": "kernel-problem", "title": nullDeref,
		"kernel_release": "7.2.13-kmodvm-1a2b3c4d", "config_hash": "abc", "exit_code": float64(exitKernelIssue),
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v (JSON: %s)", key, got[key], want, data)
		}
	}
	for _, key := range []string{"sync", "build", "steps", "modules", "guest_restarted"} {
		if _, ok := got[key]; !ok {
			t.Errorf("no %q in %s", key, data)
		}
	}
}

func TestVerdictExitCodes(t *testing.T) {
	for verdict, want := range map[string]int{
		module.VerdictOK: exitOK, module.VerdictBuildFailed: exitBuildFailed,
		module.VerdictLoadFailed: exitLoadFailed, module.VerdictKernelProblem: exitKernelIssue,
		"": exitFailure,
	} {
		if got := verdictExitCode(verdict); got != want {
			t.Errorf("verdict %q: exit %d, want %d (README's table)", verdict, got, want)
		}
	}
}
