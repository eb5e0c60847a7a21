package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/vmtest"
)

// runWithLibvirt runs `kmodvm args...` with lv as libvirt; call isolate first.
func runWithLibvirt(t *testing.T, lv vm.Libvirt, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := runApp(ctx, args, strings.NewReader(""), &out, &errb, func(a *app) {
		a.libvirt = func(context.Context) (vm.Libvirt, error) { return lv, nil }
	})
	t.Logf("kmodvm %s -> exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errb.String())
	return cliResult{code, out.String(), errb.String()}
}

// down and destroy say what they did, for people and as JSON: a VM whose domain is gone is
// "not-running" to down, and destroy removes its state and names the directory.
func TestDownDestroyReports(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     map[string]any // the JSON object; nil: the text
		wantText string
	}{
		{name: "down", args: []string{"down"}, wantText: "dev stopped (it was not running)\n"},
		{name: "down --json", args: []string{"down", "--json"},
			want: map[string]any{"schema": "kmodvm.down/v1", "name": "dev", "stopped": "not-running"}},
		{name: "destroy", args: []string{"destroy"}, wantText: "dev destroyed\n"},
		{name: "destroy --json", args: []string{"destroy", "--json"},
			want: map[string]any{"schema": "kmodvm.destroy/v1", "name": "dev", "state_dir": "STATE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			v := newCrashVM(t, "dev")
			r := runWithLibvirt(t, vmtest.NewLibvirt(), append(tt.args, "-n", "dev")...)
			if r.code != tt.wantCode {
				t.Fatalf("exit %d, want %d", r.code, tt.wantCode)
			}
			if tt.want == nil {
				if r.stdout != tt.wantText {
					t.Errorf("stdout %q, want %q", r.stdout, tt.wantText)
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatalf("stdout is not one JSON object: %v", err)
			}
			for k, w := range tt.want {
				if w == "STATE" {
					w = v.dir
				}
				if got[k] != w {
					t.Errorf("%s = %v, want %v", k, got[k], w)
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("fields %v, want those of %v", got, tt.want)
			}
			if tt.args[0] == "destroy" {
				if _, err := os.Stat(v.dir); !os.IsNotExist(err) {
					t.Errorf("the state dir %s is still there: %v", v.dir, err)
				}
			}
		})
	}
}

// capture keeps what the command wrote, up to maxExecOutput of each stream, and its status;
// a failure to run it is an error, not a result.
func TestCapture(t *testing.T) {
	big := strings.Repeat("x", maxExecOutput+10)
	lost := errors.New("the SSH connection to the guest was lost")
	tests := []struct {
		name    string
		run     func(stdout, stderr io.Writer) (int, error)
		want    execResult
		wantErr error
	}{
		{name: "output and status", run: func(o, e io.Writer) (int, error) {
			io.WriteString(o, "out\n")
			io.WriteString(e, "err\n")
			return 7, nil
		}, want: execResult{ExitCode: 7, Stdout: "out\n", Stderr: "err\n"}},
		{name: "too much output", run: func(o, e io.Writer) (int, error) {
			io.WriteString(o, big[:10])
			io.WriteString(o, big)
			io.WriteString(e, "e")
			return 0, nil
		}, want: execResult{Stdout: big[:maxExecOutput], Stderr: "e", Truncated: true}},
		{name: "no connection", run: func(io.Writer, io.Writer) (int, error) { return 0, lost }, wantErr: lost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := capture(tt.run)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.Duration <= 0 {
				t.Errorf("duration %v, want it measured", got.Duration)
			}
			got.Duration = 0
			if got != tt.want {
				t.Errorf("got exit %d, stdout %d bytes, stderr %q, truncated %v; want exit %d, %d bytes, %q, %v",
					got.ExitCode, len(got.Stdout), got.Stderr, got.Truncated, tt.want.ExitCode, len(tt.want.Stdout), tt.want.Stderr, tt.want.Truncated)
			}
		})
	}
}
