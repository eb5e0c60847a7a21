package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/provision/ktrace"
)

// TestE2EDebugKernel: on the default kernel, the debug variant (DWARF, ORC), a Rust module
// whose init panics, a C module that oopses and one whose init panics crash the guest; the trace's top module
// frame names the module's host source file and the very line that crashed, with that
// line's text, no frame of the module is a guess, and each crash is kept as a bundle that
// `kmodvm crashes` lists and shows.
func TestE2EDebugKernel(t *testing.T) {
	e2eParallel(t)
	ctx := context.Background()
	name, _ := e2eVM(t, "e2e-debug")
	n := []string{"-n", name}
	root := repoRoot(t)
	mustCLI(t, ctx, append([]string{"up"}, n...)...)

	var st struct {
		KernelDebug bool `json:"kernel_debug"`
	}
	if out := mustCLI(t, ctx, append([]string{"status", "--json"}, n...)...); json.Unmarshal([]byte(out), &st) != nil || !st.KernelDebug {
		t.Errorf("status --json: kernel_debug is not true:\n%s", out)
	}

	cases := []struct {
		dir, file, line, module string
		cmd                     []string
	}{
		// Rust: `let x = v[i];` panics (index 7 of 3); the kernel turns the panic into a BUG.
		{"testdata/modules/oops-rust", "oops_rust.rs", "let x = v[i];", "oops_rust", []string{"run"}},
		// C: KUnit's test 2 writes through NULL; the oops kills only its thread.
		{"testdata/modules/kunit-crash-c", "kunit_crash_c.c", "WRITE_ONCE(*p, 1);", "kunit_crash_c", []string{"test"}},
		// C: init panics the guest. Init is in .init.text, which in the .ko starts at address
		// 0 like .text: only the linked copy kmodvm symbolizes tells the two apart.
		{"testdata/modules/panic-c", "panicker.c", `panic("panicker: deliberate panic from a kmodvm test module");`, "panicker", []string{"run"}},
	}
	var ids []string
	for _, c := range cases {
		src := filepath.Join(root, c.dir, c.file)
		line := lineOf(t, src, c.line)
		code, out, _ := cli(t, ctx, append(append(c.cmd, n...), "--json", filepath.Join(root, c.dir))...)
		var res struct {
			Verdict string `json:"verdict"`
			CrashID string `json:"crash_id"`
			Steps   []struct {
				Traces []ktrace.Trace `json:"traces"`
			} `json:"steps"`
		}
		if code != 5 || json.Unmarshal([]byte(out), &res) != nil || res.Verdict != "kernel-problem" {
			t.Errorf("%s %s: exit %d, want 5 with verdict kernel-problem:\n%s", c.cmd[0], c.dir, code, out)
			continue
		}
		top := topModuleFrame(res.Steps, c.module)
		if top == nil {
			t.Errorf("%s %s: no trace has a frame in module %s:\n%s", c.cmd[0], c.dir, c.module, out)
			continue
		}
		if top.File != src || top.Line != line || strings.TrimSpace(top.Source) != c.line {
			t.Errorf("%s %s: top frame of %s is %s:%d %q, want %s:%d %q", c.cmd[0], c.dir, c.module, top.File, top.Line, top.Source, src, line, c.line)
		}
		if top != nil && !top.Reliable {
			t.Errorf("%s %s: the top frame of %s is a guess (%q) on the debug kernel (ORC)", c.cmd[0], c.dir, c.module, top.Raw)
		}
		if res.CrashID == "" {
			t.Errorf("%s %s: no crash_id: the crash was not kept", c.cmd[0], c.dir)
		} else {
			ids = append(ids, res.CrashID)
		}
		// The text report shows the same place, with the line itself, and the call chain ORC
		// knows: no frame marked "?" (stack leftovers are counted, not shown).
		_, text, _ := cli(t, ctx, append(append(c.cmd, n...), filepath.Join(root, c.dir))...)
		if want := "> " + c.line; !strings.Contains(text, src+":") || !strings.Contains(text, want) {
			t.Errorf("%s %s: the report lacks %s and %q:\n%s", c.cmd[0], c.dir, src, want, text)
		}
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "? ") {
				t.Errorf("%s %s: the report shows a guessed frame on the debug kernel: %q", c.cmd[0], c.dir, l)
			}
		}
	}

	// logs decodes a report still in the guest's log as run does: a WARNING leaves the guest
	// running, so its records are there to read. Its location (warn.c:6) is on the host, in
	// the module's sources, and the call chain's kernel frames have their file:line.
	warnSrc := filepath.Join(root, "testdata/modules/warn-c/warn.c")
	if code, _, _ := cli(t, ctx, append(append([]string{"run"}, n...), filepath.Join(root, "testdata/modules/warn-c"))...); code != 5 {
		t.Errorf("run warn-c: exit %d, want 5", code)
	}
	logs := mustCLI(t, ctx, append([]string{"logs", "--module", "warn"}, n...)...)
	if !strings.Contains(logs, "decoded: WARNING") || !strings.Contains(logs, "WARNING at "+warnSrc+":6") || !regexp.MustCompile(`do_init_module  /\S+/kernel/module/main\.c:\d+`).MatchString(logs) {
		t.Errorf("logs --module warn: no decoded WARNING at %s:6 with the kernel frames' file:line:\n%s", warnSrc, logs)
	}
	var decoded bool
	for l := range strings.Lines(mustCLI(t, ctx, append([]string{"logs", "--json", "--module", "warn"}, n...)...)) {
		var rec struct {
			Source string
			Trace  *ktrace.Trace
		}
		if json.Unmarshal([]byte(l), &rec) != nil || rec.Source != "trace" || rec.Trace == nil || len(rec.Trace.Locations) == 0 {
			continue
		}
		placed := slices.ContainsFunc(rec.Trace.Frames, func(f ktrace.Frame) bool { return f.Reliable && f.File != "" && f.Line > 0 })
		decoded = decoded || (rec.Trace.Locations[0].Host == warnSrc && placed)
	}
	if !decoded {
		t.Errorf("logs --json --module warn: no trace line with the location at %s and frames placed", warnSrc)
	}

	list := mustCLI(t, ctx, append([]string{"crashes", "list"}, n...)...)
	for _, id := range ids {
		if !strings.Contains(list, id) {
			t.Errorf("crashes list lacks %s:\n%s", id, list)
		}
		show := mustCLI(t, ctx, append([]string{"crashes", "show", id}, n...)...)
		if !strings.Contains(show, root) {
			t.Errorf("crashes show %s: no frame names the host source under %s:\n%s", id, root, show)
		}
	}
}

// topModuleFrame returns, of the first trace with a frame in module mod, the function of
// the module the CPU was in, else the innermost module frame of the call chain (not marked
// "?"), else the innermost module frame at all.
func topModuleFrame(steps []struct {
	Traces []ktrace.Trace `json:"traces"`
}, mod string) *ktrace.Frame {
	for _, s := range steps {
		for i := range s.Traces {
			if f := s.Traces[i].TopModuleFrame(); f != nil && f.Module == mod {
				return f
			}
		}
	}
	return nil
}

// lineOf is the 1-based number of the line of file whose text, trimmed, is text.
func lineOf(t *testing.T, file, text string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(l) == text {
			return i + 1
		}
	}
	t.Fatalf("%s has no line %q", file, text)
	return 0
}
