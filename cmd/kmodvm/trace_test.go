package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/provision/kernel"
	"github.com/kmodvm/kmodvm/provision/kmsg"
	"github.com/kmodvm/kmodvm/provision/ktrace"
	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/provision/rustsym"
	"github.com/kmodvm/kmodvm/vm/golden"
)

// tableSymbolizer answers the queries in its table by "symbol+0xoff", no position the others.
type tableSymbolizer map[string]ktrace.Source

func (s tableSymbolizer) Symbolize(_ context.Context, _ string, queries []ktrace.Query) ([][]ktrace.Source, error) {
	out := make([][]ktrace.Source, len(queries))
	for i, q := range queries {
		if src, ok := s[q.String()]; ok {
			out[i] = []ktrace.Source{src}
		}
	}
	return out, nil
}

// crashedRun is the result of a run whose load hit the captured Rust panic
// (provision/ktrace/testdata), its trace resolved by sym (nil: none) onto the sources there;
// host is the directory those sources are in.
func crashedRun(t *testing.T, sym ktrace.Symbolizer) (res *module.Result, host string) {
	t.Helper()
	data, err := os.ReadFile("../../provision/ktrace/testdata/traces/rust-panic.log")
	if err != nil {
		t.Fatal(err)
	}
	host, err = filepath.Abs("../../provision/ktrace/testdata/host")
	if err != nil {
		t.Fatal(err)
	}
	recs := kmsg.ParseLog(string(data))
	m := ktrace.Mapper{GuestModuleDir: "/root/mod", HostModuleDir: filepath.Join(host, "rust_oops"),
		GuestKernelDir: kernel.GuestTree, KernelSrc: filepath.Join(host, "linux")}
	traces := ktrace.Parse(recs)
	for i := range traces {
		if err := traces[i].Resolve(context.Background(), sym, m); err != nil {
			t.Fatal(err)
		}
	}
	st := module.Step{Action: "load", Module: "rust_oops", Iteration: 1, Error: "insmod: ERROR: could not insert module rust_oops.ko: Killed",
		Findings: kmsg.Classify(recs).Findings, Traces: traces, Duration: 320 * time.Millisecond}
	for i, f := range st.Findings { // as the runner does
		st.Findings[i].Title = m.MapText(f.Title)
	}
	for _, r := range recs {
		st.Log = append(st.Log, rustsym.DemangleText(r.Format(true)))
	}
	res = &module.Result{Module: filepath.Join(host, "rust_oops"),
		Sync:    module.SyncResult{Summary: "1 changed, 0 deleted, 0.0 s"},
		Build:   module.BuildResult{Where: "host", OK: true, Duration: 2 * time.Second},
		Steps:   []module.Step{st},
		Verdict: module.VerdictKernelProblem, Title: st.Findings[0].Title}
	return res, host
}

// A crashed run as `run` prints it (golden, -update rewrites): the step's raw log lines
// demangled, its findings, then each trace decoded: with a symbolizer, frames at their host
// file:line (a call trace frame is looked up at its call site, one byte before the return
// address printed) and the offending source line; without, at their offsets, and the note
// saying why once.
func TestPrintRunCrashed(t *testing.T) {
	sym := tableSymbolizer{
		"_RNvXCs7pXBtqNa9yW_9rust_oopsNtB2_8RustOopsNtCsbDqzXfLQacH_6kernel6Module4init+0x60": {File: "/root/mod/rust_oops.rs", Line: 19},
		"init_module+0x13":     {File: "/root/mod/rust_oops.rs", Line: 6},
		"rust_helper_BUG+0x8":  {File: kernel.GuestTree + "/rust/helpers/bug.c", Line: 7},
		"do_one_initcall+0x5a": {File: kernel.GuestTree + "/init/main.c", Line: 1270},
	}
	for _, c := range []struct {
		name string
		sym  ktrace.Symbolizer
		note string
	}{{"symbolized", sym, ""}, {"nodebug", nil, module.NoDebugInfoNote}} {
		t.Run(c.name, func(t *testing.T) {
			res, host := crashedRun(t, c.sym)
			if c.note != "" {
				res.Notes = []string{c.note}
			}
			var out bytes.Buffer
			printRun(&app{stdout: &out}, res, false)
			got := out.String()
			if strings.Contains(got, "_RNv") {
				t.Errorf("a mangled symbol is printed:\n%s", got)
			}
			if n := strings.Count(got, "trace:\n"); n != 1 {
				t.Errorf("%d traces printed, want 1", n)
			}
			golden.Check(t, filepath.Join("testdata", "run-crashed-"+c.name+".txt"), []byte(strings.ReplaceAll(got, host, "$HOST")))
		})
	}
}
