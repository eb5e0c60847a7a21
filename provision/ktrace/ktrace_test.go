package ktrace

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/provision/kmsg"
	"github.com/kmodvm/kmodvm/vm/golden"
)

// readTraces parses a captured log under testdata/traces.
func readTraces(t *testing.T, name string) []Trace {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata/traces", name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	return Parse(kmsg.ParseLog(string(data)))
}

func formatAll(traces []Trace) []byte {
	var b strings.Builder
	for i, tr := range traces {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(Format(tr))
	}
	return []byte(b.String())
}

func jsonAll(t *testing.T, traces []Trace) []byte {
	t.Helper()
	data, err := json.MarshalIndent(traces, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(data, '\n')
}

// TestParseGolden reads each captured log (testdata/traces/*.log) into its
// traces: NAME.json holds them, NAME.txt their rendering.
func TestParseGolden(t *testing.T) {
	logs, err := filepath.Glob("testdata/traces/*.log")
	if err != nil || len(logs) == 0 {
		t.Fatalf("no logs under testdata/traces: %v", err)
	}
	for _, path := range logs {
		name := strings.TrimSuffix(filepath.Base(path), ".log")
		t.Run(name, func(t *testing.T) {
			traces := readTraces(t, name)
			if len(traces) == 0 {
				t.Fatal("no trace found")
			}
			golden.Check(t, filepath.Join("testdata/traces", name+".json"), jsonAll(t, traces))
			golden.Check(t, filepath.Join("testdata/traces", name+".txt"), formatAll(traces))
		})
	}
}

// TestParseFacts holds the facts the golden files show to account, so an
// -update that loses one fails here.
func TestParseFacts(t *testing.T) {
	cases := []struct {
		log        string
		kind       string
		rip        string
		frames     int
		firstFrame string
		kunitTest  string
		locations  []string // kind file:line[:col]
		message    string
	}{
		{log: "rust-panic", kind: "rust-panic", rip: "rust_helper_BUG", frames: 11,
			firstFrame: "kernel::rust_panic_fmt",
			locations:  []string{"panic /root/mod/rust_oops.rs:19:9", "bug rust/helpers/bug.c:7"},
			message:    "index out of bounds: the len is 3 but the index is 7"},
		{log: "warning-rust", kind: "warning", rip: "<rust_hello::RustHello as kernel::Module>::init", frames: 10,
			firstFrame: "kernel::module::init_module_impl",
			locations:  []string{"warning /root/mod/rust_hello.rs:24"}},
		{log: "warn-c", kind: "warning", rip: "init_module", frames: 16, firstFrame: "do_one_initcall",
			locations: []string{"warning warn.c:6"}},
		{log: "panic-c", kind: "panic", frames: 21, firstFrame: "vpanic",
			message: "panicker: deliberate panic from a kmodvm test module"},
		{log: "kunit-c-oops", kind: "oops", rip: "kunit_crash_c_oops", frames: 10, firstFrame: "ktime_get_ts64",
			kunitTest: "kunit_crash_c_oops", locations: []string{"kunit kunit_crash_c.c:31"}},
		{log: "kunit-c-panic", kind: "panic", frames: 0,
			message: "kunit_crash_c: deliberate panic in a test"},
		{log: "bug-at", kind: "bug", rip: "hello_init", locations: []string{"bug /root/mod/hello.c:20"}},
		{log: "hung-task", kind: "hung-task", frames: 8, firstFrame: "__schedule"},
	}
	for _, c := range cases {
		t.Run(c.log, func(t *testing.T) {
			traces := readTraces(t, c.log)
			if len(traces) != 1 {
				t.Fatalf("%d traces, want 1: %+v", len(traces), traces)
			}
			tr := traces[0]
			if tr.Kind != c.kind {
				t.Errorf("kind %q, want %q", tr.Kind, c.kind)
			}
			rip := ""
			if tr.RIP != nil {
				rip = tr.RIP.Func
			}
			if rip != c.rip {
				t.Errorf("RIP %q, want %q", rip, c.rip)
			}
			if c.frames > 0 && len(tr.Frames) != c.frames {
				t.Errorf("%d frames, want %d", len(tr.Frames), c.frames)
			}
			if c.firstFrame != "" && (len(tr.Frames) == 0 || tr.Frames[0].Func != c.firstFrame) {
				t.Errorf("first frame %+v, want %s", tr.Frames, c.firstFrame)
			}
			if tr.KUnitTest != c.kunitTest {
				t.Errorf("KUnit test %q, want %q", tr.KUnitTest, c.kunitTest)
			}
			var locs []string
			for _, l := range tr.Locations {
				locs = append(locs, l.Kind+" "+l.String())
			}
			if strings.Join(locs, "|") != strings.Join(c.locations, "|") {
				t.Errorf("locations %q, want %q", locs, c.locations)
			}
			if c.message != "" && tr.Message != c.message {
				t.Errorf("message %q, want %q", tr.Message, c.message)
			}
			for _, f := range tr.Frames {
				if strings.HasPrefix(f.Func, "_R") || strings.HasPrefix(f.Func, "_ZN") {
					t.Errorf("frame %q left mangled", f.Raw)
				}
			}
		})
	}
}

func TestKUnitFault(t *testing.T) {
	recs := []kmsg.Record{
		{Text: "    KTAP version 1"},
		{Text: "    # mytest_crashes: try faulted: last line seen mytest.c:12"},
		{Text: "    not ok 1 mytest_crashes"},
	}
	traces := Parse(recs)
	if len(traces) != 1 {
		t.Fatalf("%d traces, want 1: %+v", len(traces), traces)
	}
	tr := traces[0]
	if tr.Kind != KindKUnitFault || tr.KUnitTest != "mytest_crashes" || tr.Record != 1 ||
		len(tr.Locations) != 1 || tr.Locations[0].String() != "mytest.c:12" {
		t.Errorf("got %+v", tr)
	}
	if want := "KUnit test mytest_crashes faulted at mytest.c:12"; tr.Title != want {
		t.Errorf("title %q, want %q", tr.Title, want)
	}
}

func TestKUnitTestName(t *testing.T) {
	cases := []struct {
		name  string
		trace string
		want  string
	}{
		{"C", " ? kunit_crash_c_oops+0x12/0x30 [kunit_crash_c]\n kunit_try_run_case+0x5/0x9", "kunit_crash_c_oops"},
		{"Rust wrapper", " rust_panic+0x1/0x2\n kunit_rust_wrapper_adds+0x1/0x2 [kunit_rust]\n kunit_try_run_case+0x5/0x9", "adds"},
		{"mangled Rust", " _RNvCsba7VXYN6cTp_10kunit_rust23kunit_rust_wrapper_adds+0x1/0x2 [kunit_rust]\n kunit_try_run_case+0x5/0x9", "adds"},
		{"KUnit's own frames skipped", " hello_boom+0x1/0x2 [hello]\n kunit_generic_run_case+0x1/0x2\n kunit_try_run_case+0x5/0x9", "hello_boom"},
		{"not in a test", " hello_init+0x1/0x2 [hello]\n do_one_initcall+0x1/0x2", ""},
		{"nothing above", "kunit_try_run_case+0x5/0x9", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := CrashedKUnitTest([]kmsg.Record{{Text: c.trace}}); got != c.want {
				t.Errorf("CrashedKUnitTest = %q, want %q", got, c.want)
			}
		})
	}
}

func TestParseFrame(t *testing.T) {
	cases := []struct {
		line string
		ok   bool
		want Frame
	}{
		{" ? hello_init+0x15/0x30 [hello]", true,
			Frame{Func: "hello_init", Offset: 0x15, Size: 0x30, Module: "hello", Raw: "? hello_init+0x15/0x30 [hello]"}},
		{"do_one_initcall+0x5b/0x310", true,
			Frame{Func: "do_one_initcall", Offset: 0x5b, Size: 0x310, Reliable: true, Raw: "do_one_initcall+0x5b/0x310"}},
		{" hello_init+0x15/0x30 [hello 0123456789abcdef0123456789abcdef01234567]", true,
			Frame{Func: "hello_init", Offset: 0x15, Size: 0x30, Module: "hello", Reliable: true,
				Raw: "hello_init+0x15/0x30 [hello 0123456789abcdef0123456789abcdef01234567]"}},
		{" _RNvCsba7VXYN6cTp_9rust_oops5check+0x3c/0x3c [rust_oops]", true,
			Frame{Func: "rust_oops::check", Symbol: "_RNvCsba7VXYN6cTp_9rust_oops5check", Offset: 0x3c, Size: 0x3c,
				Module: "rust_oops", Reliable: true, Raw: "_RNvCsba7VXYN6cTp_9rust_oops5check+0x3c/0x3c [rust_oops]"}},
		{" ? 0xffffffffa0200000", true, Frame{Addr: 0xffffffffa0200000, Raw: "? 0xffffffffa0200000"}},
		{" <TASK>", false, Frame{}},
		{"RIP: 0033:0x7fb3a152a779", false, Frame{}},
		{"RSP: 0018:ffffc900002f7b88 EFLAGS: 00010246", false, Frame{}},
		{"Kernel panic - not syncing: x+0x1/0x2 happened", false, Frame{}},
	}
	for _, c := range cases {
		got, ok := ParseFrame(c.line)
		if ok != c.ok || got != c.want {
			t.Errorf("ParseFrame(%q) = %+v, %v; want %+v, %v", c.line, got, ok, c.want, c.ok)
		}
	}
}

func TestMapper(t *testing.T) {
	host := t.TempDir()
	mod := filepath.Join(host, "mod")
	src := filepath.Join(host, "linux")
	root := filepath.Join(host, "root")
	extra := filepath.Join(host, "entry-sources")
	for _, f := range []string{"mod/hello.rs", "mod/sub/x.c", "other/warn.c", "linux/rust/helpers/bug.c", "linux/kernel/module/main.c",
		"root/usr/lib/rustlib/src/rust/library/core/src/panicking.rs", "root/etc/passwd",
		"linux/include/linux/slab.h", "entry-sources/rust/kernel/lib.rs", "entry-sources/include/linux/slab.h"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(host, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(host, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := Mapper{GuestModuleDir: "/root/kmodvm/src/mod-1234", HostModuleDir: mod, GuestKernelDir: "/usr/src/kmodvm/linux", KernelSrc: src, ToolchainRoot: root,
		KernelExtra: []string{extra, filepath.Join(host, "no-such-dir")},
		Modules:     map[string]string{"/root/kmodvm/src/other-5678": filepath.Join(host, "other")}}
	cases := []struct{ in, want string }{
		// Another module kmodvm built for the VM: by its absolute path only.
		{"/root/kmodvm/src/other-5678/warn.c", host + "/other/warn.c"},
		{"warn.c", ""},
		{"hello.rs", mod + "/hello.rs"},
		{"sub/x.c", mod + "/sub/x.c"},
		{"/root/kmodvm/src/mod-1234/hello.rs", mod + "/hello.rs"},
		{"/root/kmodvm/src/mod-12345/hello.rs", ""}, // a sibling, not inside
		{"rust/helpers/bug.c", src + "/rust/helpers/bug.c"},
		{"/usr/src/kmodvm/linux/kernel/module/main.c", src + "/kernel/module/main.c"},
		{"/usr/src/kmodvm/linux/kernel/missing.c", ""},
		// The kernel's other host directories, after KernelSrc.
		{"rust/kernel/lib.rs", extra + "/rust/kernel/lib.rs"},
		{"/usr/src/kmodvm/linux/rust/kernel/lib.rs", extra + "/rust/kernel/lib.rs"},
		{"./include/linux/slab.h", src + "/include/linux/slab.h"},
		{"missing.rs", ""},
		{"/etc/passwd", ""}, // exists on the host and in the root, but names no source
		{"/usr/lib/rustlib/src/rust/library/core/src/panicking.rs", root + "/usr/lib/rustlib/src/rust/library/core/src/panicking.rs"},
		{"/usr/lib/rustlib/src/rust/library/core/src/missing.rs", ""},
		{"sub", ""}, // a directory
		{"", ""},
	}
	for _, c := range cases {
		got, ok := m.Map(c.in)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("Map(%q) = %q, %v; want %q", c.in, got, ok, c.want)
		}
	}
	text := "hello.rs:3:5: error\n  --> sub/x.c:7\npanicked at /root/kmodvm/src/mod-1234/hello.rs:19:9:\nkernel BUG at rust/helpers/bug.c:7!\nFAILED at gone.c:4" +
		"\n   ::: rust/kernel/lib.rs:56:9\nIn file included from /usr/src/kmodvm/linux/include/linux/slab.h:12:\nkfrom rust/kernel/lib.rs:1"
	want := mod + "/hello.rs:3:5: error\n  --> " + mod + "/sub/x.c:7\npanicked at " + mod + "/hello.rs:19:9:\nkernel BUG at " + src + "/rust/helpers/bug.c:7!\nFAILED at gone.c:4" +
		"\n   ::: " + extra + "/rust/kernel/lib.rs:56:9\nIn file included from " + src + "/include/linux/slab.h:12:\nkfrom rust/kernel/lib.rs:1"
	if got := m.MapText(text); got != want {
		t.Errorf("MapText:\n%s\nwant\n%s", got, want)
	}
}

func fakeAddr2Line(t *testing.T) *Addr2Line {
	t.Helper()
	script, err := filepath.Abs("testdata/fake-addr2line")
	if err != nil {
		t.Fatal(err)
	}
	return &Addr2Line{
		Command: []string{script},
		Object: func(module string) (string, error) {
			if module == "" {
				return "/boot/vmlinux", nil
			}
			return "/build/" + module + ".ko", nil
		},
	}
}

func TestAddr2Line(t *testing.T) {
	a := fakeAddr2Line(t)
	argsLog := filepath.Join(t.TempDir(), "args")
	t.Setenv("FAKE_ADDR2LINE_ARGS", argsLog)
	ctx := context.Background()

	// One run for all the module's queries: an inline chain, a position unknown, another.
	init := "_RNvXCs7pXBtqNa9yW_9rust_oopsNtB2_8RustOopsNtCsbDqzXfLQacH_6kernel6Module4init"
	got, err := a.Symbolize(ctx, "rust_oops", []Query{{init, 0x60}, {"entry_SYSCALL_64_after_hwframe", 0x75}, {"init_module", 0x13}})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]Source{
		{
			{Func: "core::panicking::panic_bounds_check", File: "/usr/src/rustc/library/core/src/panicking.rs", Line: 276},
			{Func: "<rust_oops::RustOops as kernel::Module>::init", File: "/root/mod/rust_oops.rs", Line: 19},
		},
		nil,
		{{Func: "init_module", File: "/root/mod/rust_oops.rs", Line: 6}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sources %+v, want %+v", got, want)
	}
	args, err := os.ReadFile(argsLog)
	if err != nil {
		t.Fatal(err)
	}
	wantArgs := "-f\n-i\n--no-demangle\n--output-style=JSON\n-e\n/build/rust_oops.ko\n" + init + "+0x60\nentry_SYSCALL_64_after_hwframe+0x75\ninit_module+0x13\n"
	if string(args) != wantArgs {
		t.Errorf("arguments:\n%s\nwant\n%s", args, wantArgs)
	}

	if got, err := a.Symbolize(ctx, "m", nil); got != nil || err != nil {
		t.Errorf("no queries: %v, %v; want nothing run", got, err)
	}
	if _, err := a.Symbolize(ctx, "m", []Query{{"f", 1}, {"broken", 1}}); err == nil || !strings.Contains(err.Error(), "No such file") {
		t.Errorf("failing command: err %v, want its stderr in it", err)
	}
	a.Object = func(string) (string, error) { return "", os.ErrNotExist }
	if _, err := a.Symbolize(ctx, "m", []Query{{"x", 1}}); !errorsIs(err, ErrNoObject) || !errorsIs(err, os.ErrNotExist) || !strings.Contains(err.Error(), "module m") {
		t.Errorf("missing object: err %v", err)
	}
}

// TestParseAddr2Line: llvm-addr2line's JSON as it prints it (captured from LLVM 21 on a
// debug kernel's vmlinux and on a linked C module), one answer per query, a SYMBOL+OFFSET's
// positions under "Loc" and an address's under "Symbol"; an object it cannot read; a count
// that does not match.
func TestParseAddr2Line(t *testing.T) {
	const real = `[{"Loc":[{"Column":8,"Discriminator":0,"FileName":"/usr/src/kmodvm/linux/init/main.c","FunctionName":"do_one_initcall","Line":1352,"StartAddress":"0xffffffff81208000","StartFileName":"/usr/src/kmodvm/linux/init/main.c","StartLine":1342}],"ModuleName":"/tmp/v","SymName":"do_one_initcall"},{"Loc":[],"ModuleName":"/tmp/v","SymName":"bogus_symbol"},` +
		`{"Address":"0x201283","ModuleName":"/tmp/kmodvm-symbolize/panicker.ko","Symbol":[{"Column":2,"Discriminator":0,"FileName":"/root/m/panicker.c","FunctionName":"init_module","Line":7,"StartAddress":"0x201280","StartFileName":"/root/m/panicker.c","StartLine":5}]}]`
	got, err := parseAddr2Line([]byte(real+"\n"), 3)
	want := [][]Source{{{Func: "do_one_initcall", File: "/usr/src/kmodvm/linux/init/main.c", Line: 1352}}, nil, {{Func: "init_module", File: "/root/m/panicker.c", Line: 7}}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("parse = %+v, %v; want %+v", got, err, want)
	}
	const unreadable = `{"Address":"0x0","Error":{"Message":"No such file or directory"},"ModuleName":"/tmp/nonexist"}`
	if _, err := parseAddr2Line([]byte(unreadable), 2); err == nil || !strings.Contains(err.Error(), "No such file or directory") {
		t.Errorf("unreadable object: err %v", err)
	}
	if _, err := parseAddr2Line([]byte(real), 4); err == nil || !strings.Contains(err.Error(), "3 answers to 4 queries") {
		t.Errorf("answers short: err %v", err)
	}
	if _, err := parseAddr2Line([]byte("do_one_initcall\n/usr/src/x.c:1\n"), 1); err == nil {
		t.Error("text output: no error")
	}
}

// TestResolve symbolizes the Rust panic with the fake llvm-addr2line and
// maps it onto testdata/host: the golden rendering shows host paths and the
// offending source line.
func TestResolve(t *testing.T) {
	traces := readTraces(t, "rust-panic")
	host, err := filepath.Abs("testdata/host")
	if err != nil {
		t.Fatal(err)
	}
	m := Mapper{
		GuestModuleDir: "/root/mod", HostModuleDir: filepath.Join(host, "rust_oops"),
		GuestKernelDir: "/usr/src/kmodvm/linux", KernelSrc: filepath.Join(host, "linux"),
	}
	tr := &traces[0]
	if err := tr.Resolve(context.Background(), fakeAddr2Line(t), m); err != nil {
		t.Fatal(err)
	}
	top := tr.TopModuleFrame()
	if top == nil || top.Source != "let n = numbers[i];" {
		t.Errorf("top module frame %+v, want the source line of rust_oops.rs:19", top)
	}
	if tr.Locations[0].Host != filepath.Join(host, "rust_oops/rust_oops.rs") || tr.Locations[1].Host != filepath.Join(host, "linux/rust/helpers/bug.c") {
		t.Errorf("locations %+v", tr.Locations)
	}
	got := strings.ReplaceAll(Format(*tr), host, "$HOST")
	golden.Check(t, "testdata/resolved/rust-panic.txt", []byte(got))
}

// failing fails every symbolization of one module and counts the calls, in order.
type failing struct {
	module string
	calls  map[string]int
	order  []string
}

func (f *failing) Symbolize(_ context.Context, module string, qs []Query) ([][]Source, error) {
	f.calls[module]++
	f.order = append(f.order, module)
	if module == f.module {
		return nil, os.ErrNotExist
	}
	out := make([][]Source, len(qs))
	for i, q := range qs {
		out[i] = []Source{{Func: q.Symbol, File: "x.c", Line: 1}}
	}
	return out, nil
}

// TestResolveAsksEachModuleOnce: one query batch per module, the module before the kernel;
// a module that fails leaves the others' frames placed.
func TestResolveAsksEachModuleOnce(t *testing.T) {
	traces := readTraces(t, "rust-panic")
	s := &failing{module: "", calls: map[string]int{}}
	err := traces[0].Resolve(context.Background(), s, Mapper{})
	if err == nil {
		t.Fatal("no error for the kernel frames")
	}
	if s.calls[""] != 1 || s.calls["rust_oops"] != 1 {
		t.Errorf("calls %v, want the kernel and rust_oops once each", s.calls)
	}
	if len(s.order) != 2 || s.order[0] != "rust_oops" {
		t.Errorf("asked %q, want rust_oops before the kernel", s.order)
	}
	if f := traces[0].Frames[2]; f.File != "x.c" || f.Line != 1 {
		t.Errorf("module frame %+v not symbolized", f)
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// placeFrame puts a frame at its module's own line when code from core or the kernel was
// inlined there, else at the innermost position on the host, else the innermost at all.
func TestPlaceFrame(t *testing.T) {
	host := t.TempDir()
	for _, f := range []string{"mod/m.rs", "root/usr/lib/rustlib/src/rust/library/core/src/slice/index.rs", "linux/lib/kunit/test.c"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(host, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(host, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := Mapper{GuestModuleDir: "/root/mod", HostModuleDir: filepath.Join(host, "mod"), GuestKernelDir: "/usr/src/kmodvm/linux",
		KernelSrc: filepath.Join(host, "linux"), ToolchainRoot: filepath.Join(host, "root")}
	core := Source{File: "/usr/lib/rustlib/src/rust/library/core/src/slice/index.rs", Line: 272}
	kunit := Source{File: "/usr/src/kmodvm/linux/lib/kunit/test.c", Line: 448}
	mod := Source{File: "/root/mod/m.rs", Line: 37}
	gone := Source{File: "/nowhere/x.rs", Line: 9}
	for _, tt := range []struct {
		name     string
		srcs     []Source
		file     string
		line     int
		wantHost bool
	}{
		{"core inlined into the module", []Source{core, mod}, filepath.Join(host, "mod/m.rs"), 37, true},
		{"the module's line innermost", []Source{mod, core}, filepath.Join(host, "mod/m.rs"), 37, true},
		{"no module position: the innermost on the host", []Source{gone, core, kunit}, filepath.Join(host, "root/usr/lib/rustlib/src/rust/library/core/src/slice/index.rs"), 272, true},
		{"nothing on the host: the innermost", []Source{gone, {File: "/nowhere/y.c", Line: 3}}, "/nowhere/x.rs", 9, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var f Frame
			onHost := placeFrame(&f, tt.srcs, m)
			if f.File != tt.file || f.Line != tt.line || onHost != tt.wantHost {
				t.Errorf("placed at %s:%d (on the host: %v), want %s:%d (%v)", f.File, f.Line, onHost, tt.file, tt.line, tt.wantHost)
			}
		})
	}
}

// TestAddressQueries: in a linked object each function has one address, and a query for it
// becomes that address plus the offset; a name two static functions share, a name not
// there, and every query of an object that is not linked stay SYMBOL+OFFSET.
func TestAddressQueries(t *testing.T) {
	queries := []Query{{"in_text", 0x2}, {"in_init", 0x3}, {"dup", 0x1}, {"use_dup", 0}, {"nowhere", 0x4}}
	symbolic := []string{"in_text+0x2", "in_init+0x3", "dup+0x1", "use_dup+0x0", "nowhere+0x4"}
	cases := []struct {
		name, object string
		want         []string
	}{
		// readelf -s testdata/linked.elf: in_text 0x401010 (.text), in_init 0x401050
		// (.init.text), dup at 0x401000 and at 0x401030, use_dup 0x401020.
		{"linked", "testdata/linked.elf", []string{"0x401012", "0x401053", "dup+0x1", "0x401020", "nowhere+0x4"}},
		{"relocatable: .text and .init.text both at 0", "testdata/linked/two.o", symbolic},
		{"not an object", "testdata/fake-addr2line", symbolic},
		{"missing", "testdata/no-such-file", symbolic},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := addressQueries(c.object, queries); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

// TestAddr2LineLinked: a module's queries go to its linked copy, by address where the copy
// has one, and the copy is removed afterwards; the kernel is never linked; a link that
// fails leaves the module's own object asked by symbol.
func TestAddr2LineLinked(t *testing.T) {
	a := fakeAddr2Line(t)
	argsLog := filepath.Join(t.TempDir(), "args")
	t.Setenv("FAKE_ADDR2LINE_ARGS", argsLog)
	linked, err := filepath.Abs("testdata/linked.elf")
	if err != nil {
		t.Fatal(err)
	}
	var linkedFrom []string
	done := 0
	linkErr := error(nil)
	a.Link = func(_ context.Context, object string) (string, func(), error) {
		linkedFrom = append(linkedFrom, object)
		if linkErr != nil {
			return "", nil, linkErr
		}
		return linked, func() { done++ }, nil
	}
	readArgs := func() string {
		t.Helper()
		b, err := os.ReadFile(argsLog)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(argsLog); err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	ctx := t.Context()

	got, err := a.Symbolize(ctx, "two", []Query{{"in_text", 0x2}, {"dup", 0x1}})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]Source{
		{
			{Func: "twice", File: "/root/mod/two.c", Line: 5},
			{Func: "in_text", File: "/root/mod/two.c", Line: 10},
		},
		{{Func: "dup", File: "/usr/src/kmodvm/linux/init/main.c", Line: 1000}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sources %+v, want %+v", got, want)
	}
	if args := readArgs(); !strings.HasSuffix(args, "-e\n"+linked+"\n0x401012\ndup+0x1\n") {
		t.Errorf("arguments:\n%s\nwant the linked copy asked by address where it has one", args)
	}
	if !slices.Equal(linkedFrom, []string{"/build/two.ko"}) || done != 1 {
		t.Errorf("linked %q, removed %d times; want /build/two.ko, once", linkedFrom, done)
	}

	if _, err := a.Symbolize(ctx, "", []Query{{"do_fault", 0x1a}}); err != nil {
		t.Fatal(err)
	}
	if args := readArgs(); !strings.HasSuffix(args, "-e\n/boot/vmlinux\ndo_fault+0x1a\n") || len(linkedFrom) != 1 {
		t.Errorf("kernel: arguments\n%s\nlinked %q; want vmlinux itself asked by symbol", args, linkedFrom)
	}

	linkErr = errors.New("ld.lld: error: broken")
	if _, err := a.Symbolize(ctx, "two", []Query{{"in_text", 0x2}}); err != nil {
		t.Fatal(err)
	}
	if args := readArgs(); !strings.HasSuffix(args, "-e\n/build/two.ko\nin_text+0x2\n") {
		t.Errorf("failed link: arguments\n%s\nwant the module's own object asked by symbol", args)
	}
}
