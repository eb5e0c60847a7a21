package module

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/provision/kernel"
	"github.com/kmodvm/kmodvm/provision/ktrace"
)

// fakeSymbolizer answers "module:symbol+0xoff" queries from a table, and no position for
// the others; err, when set, is its answer to every module; block makes it wait for the end
// of its context (a stuck llvm-addr2line). It keeps the modules it was asked about, a call
// each.
type fakeSymbolizer struct {
	answers map[string]ktrace.Source
	err     error
	block   bool

	mu    sync.Mutex
	calls []string
}

func (f *fakeSymbolizer) Symbolize(ctx context.Context, module string, queries []ktrace.Query) ([][]ktrace.Source, error) {
	out := make([][]ktrace.Source, len(queries))
	f.mu.Lock()
	f.calls = append(f.calls, module)
	for i, q := range queries {
		if src, ok := f.answers[module+":"+q.String()]; ok {
			out[i] = []ktrace.Source{src}
		}
	}
	f.mu.Unlock()
	if f.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if f.err != nil {
		return nil, f.err
	}
	return out, nil
}

// consoleTS is the timestamp a captured console line starts with.
var consoleTS = regexp.MustCompile(`(?m)^\[[ 0-9.]+\] `)

// capturedTrace reads a kernel log captured from a real run (provision/ktrace/testdata/traces)
// as the text of its records, one a line, its build dir /root/mod replaced by remote.
func capturedTrace(t *testing.T, name, remote string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "ktrace", "testdata", "traces", name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(consoleTS.ReplaceAllString(string(b), ""), "/root/mod", remote)
}

// logsTrace is fake insmod or rmmod code that logs the records in $G/FILE, then exits with code.
func logsTrace(file string, code int) string {
	return fmt.Sprintf(`while IFS= read -r l; do klog 4 "$l"; done < "$G/%s"; exit %d`, file, code)
}

// The crash traces of every step are decoded into Step.Traces: frames demangled, at their
// host file:line when the symbolizer answers, the kernel's printed locations mapped to host
// files, the source line of the top module frame read; the raw log lines are demangled too.
// A run whose traces got no file:line for want of debug information says so once.
func TestRunDecodesTraces(t *testing.T) {
	const rustInit = "_RNvXCs7pXBtqNa9yW_9rust_oopsNtB2_8RustOopsNtCsbDqzXfLQacH_6kernel6Module4init"
	nmiConsole, err := os.ReadFile("testdata/nmi-hang-console.txt")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		insmod string // the captured log insmod logs ("" none)
		rmmod  string // the captured log rmmod logs
		nmi    bool   // the load hangs; the NMI's console trace is the story
		sym    *fakeSymbolizer
		budget time.Duration
		traces []int    // traces per step
		notes  []string // the notes, each a part of one, in order
		check  func(t *testing.T, res *Result, host, ksrc string)
		calls  int // the symbolizer's calls (a module's queries each), at least (-1: none)
	}{
		{
			name:   "Rust panic at load symbolized",
			insmod: "rust-panic",
			sym: &fakeSymbolizer{answers: map[string]ktrace.Source{
				"rust_oops:" + rustInit + "+0x60": {File: "REMOTE/rust_oops.rs", Line: 19},
				":rust_helper_BUG+0x8":            {File: kernel.GuestTree + "/rust/helpers/bug.c", Line: 7},
			}},
			traces: []int{1},
			check: func(t *testing.T, res *Result, host, ksrc string) {
				tr := res.Steps[0].Traces[0]
				if !strings.Contains(res.Title, filepath.Join(host, "rust_oops.rs")+":19") {
					t.Errorf("verdict title %q: want the host file", res.Title)
				}
				if tr.Kind != "rust-panic" || !strings.Contains(tr.Title, filepath.Join(host, "rust_oops.rs")+":19") {
					t.Errorf("trace %q %q: want the Rust panic, titled with the host file", tr.Kind, tr.Title)
				}
				top := tr.TopModuleFrame()
				if top == nil || top.Func != "<rust_oops::RustOops as kernel::Module>::init" || top.File != filepath.Join(host, "rust_oops.rs") || top.Line != 19 || top.Source != "let n = numbers[i];" {
					t.Errorf("top module frame %+v: want init demangled at the host's rust_oops.rs:19 with its line", top)
				}
				if tr.RIP == nil || tr.RIP.File != filepath.Join(ksrc, "rust/helpers/bug.c") {
					t.Errorf("RIP %+v: want the kernel's bug.c on the host", tr.RIP)
				}
				if len(tr.Locations) != 2 || tr.Locations[0].Host != filepath.Join(host, "rust_oops.rs") || tr.Locations[1].Host != filepath.Join(ksrc, "rust/helpers/bug.c") {
					t.Errorf("locations %+v: want panicked at and BUG at mapped to the host", tr.Locations)
				}
				log := logText(res.Steps[0])
				if strings.Contains(log, "_RNv") || !strings.Contains(log, "<rust_oops::RustOops as kernel::Module>::init+0x61/0x70 [rust_oops]") {
					t.Errorf("log lines not demangled:\n%s", log)
				}
			},
			calls: 2,
		},
		{
			name:  "WARNINGs at load and unload without line information",
			rmmod: "warn-c", insmod: "warning-rust",
			sym:    &fakeSymbolizer{},
			traces: []int{1, 1},
			notes:  []string{NoDebugInfoNote},
			check: func(t *testing.T, res *Result, _, _ string) {
				if rip := res.Steps[0].Traces[0].RIP; rip == nil || rip.Func != "<rust_hello::RustHello as kernel::Module>::init" || rip.File != "" {
					t.Errorf("RIP %+v: want it demangled, without a file", rip)
				}
			},
			calls: 2,
		},
		{
			name:   "hang: the NMI trace without a symbolizer",
			nmi:    true,
			traces: []int{1},
			notes:  []string{NoDebugInfoNote},
			check: func(t *testing.T, res *Result, _, _ string) {
				f := res.Steps[0].Traces[0].TopModuleFrame()
				if f == nil || f.Func != "kunit_crash_c_oops" || f.Module != "kunit_crash_c" {
					t.Errorf("top module frame %+v: want where the CPU was stuck", f)
				}
			},
			calls: -1,
		},
		{
			name:   "the symbolizer fails",
			insmod: "warn-c",
			sym:    &fakeSymbolizer{err: errors.New("llvm-addr2line: not found")},
			traces: []int{1, 0},
			notes:  []string{"some trace frames have no file:line: llvm-addr2line: not found"},
			calls:  2, // the module and the kernel, once each
		},
		{
			name:   "the symbolizer hangs",
			insmod: "warn-c",
			sym:    &fakeSymbolizer{block: true},
			budget: 100 * time.Millisecond,
			traces: []int{1, 0},
			notes:  []string{"took longer than 100ms and was stopped"},
			calls:  1,
		},
		{
			name:   "a log without a trace",
			traces: []int{0, 0},
			calls:  -1,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newFakeGuest(t)
			src := moduleSource(t)
			remote := path.Join(g.files.Root, RemoteDir(src.Dir))
			if err := os.WriteFile(filepath.Join(src.Dir, "rust_oops.rs"), []byte(strings.Repeat("\n", 18)+"        let n = numbers[i];\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			ksrc := t.TempDir()
			if err := os.MkdirAll(filepath.Join(ksrc, "rust/helpers"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(ksrc, "rust/helpers/bug.c"), []byte("\n\n\n\n\n\n\tBUG();\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if c.insmod != "" {
				g.write("insmod.log", capturedTrace(t, c.insmod, remote), 0o644)
				g.write("insmod.sh", logsTrace("insmod.log", 0), 0o644)
				if c.insmod == "rust-panic" {
					g.write("insmod.sh", logsTrace("insmod.log", 137), 0o644)
				}
			}
			if c.rmmod != "" {
				g.write("rmmod.log", capturedTrace(t, c.rmmod, remote), 0o644)
				g.write("rmmod.sh", `while IFS= read -r l; do klog 4 "$l"; done < "$G/rmmod.log"`, 0o644)
			}
			timeout := time.Duration(0)
			if c.nmi {
				g.write("insmod.sh", "sleep 60", 0o644)
				g.write("nmi-console", string(nmiConsole), 0o644)
				timeout = time.Second
			}
			r := g.runner(nil)
			defer r.Close()
			if c.sym != nil {
				for k, v := range c.sym.answers {
					v.File = strings.Replace(v.File, "REMOTE", remote, 1)
					c.sym.answers[k] = v
				}
				r.Symbolizer = c.sym
			}
			r.Mapper = ktrace.Mapper{GuestKernelDir: kernel.GuestTree, KernelSrc: ksrc}
			r.symbolizeBudget = c.budget
			res, err := r.Run(testCtx(t), Options{Source: src, Where: BuildGuest, Timeout: timeout})
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, st := range res.Steps {
				got = append(got, len(st.Traces))
			}
			if fmt.Sprint(got) != fmt.Sprint(c.traces) {
				t.Fatalf("traces per step %v, want %v; steps %+v", got, c.traces, res.Steps)
			}
			if len(res.Notes) != len(c.notes) {
				t.Fatalf("notes %q, want %d: %q", res.Notes, len(c.notes), c.notes)
			}
			for i, n := range c.notes {
				if !strings.Contains(res.Notes[i], n) {
					t.Errorf("note %q, want one with %q", res.Notes[i], n)
				}
			}
			if c.check != nil {
				c.check(t, res, src.Dir, ksrc)
			}
			n := 0
			if c.sym != nil {
				n = len(c.sym.calls)
			}
			if (c.calls < 0 && n != 0) || n < c.calls {
				t.Errorf("%d symbolizer calls, want %d", n, c.calls)
			}
		})
	}
}
