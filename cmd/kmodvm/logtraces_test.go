package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/provision/kmsg"
	"github.com/kmodvm/kmodvm/provision/ktrace"
	"github.com/kmodvm/kmodvm/provision/module"
)

// placing answers every query with a file:line; with none, with nothing (no debug
// information).
type placing struct{ none bool }

func (p placing) Symbolize(_ context.Context, mod string, qs []ktrace.Query) ([][]ktrace.Source, error) {
	out := make([][]ktrace.Source, len(qs))
	for i, q := range qs {
		if !p.none {
			out[i] = []ktrace.Source{{Func: q.Symbol, File: "/src/" + q.Symbol + ".c", Line: 7}}
		}
	}
	return out, nil
}

func traceLog(t *testing.T, name string) []kmsg.Record {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "provision", "ktrace", "testdata", "traces", name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	return kmsg.ParseLog(string(data))
}

// logs decodes each crash report right after its last record: a WARNING and a Rust panic at
// their "---[ end" line (not at the "</TASK>" inside them), a hung task at its "</TASK>",
// and a report the log ends in when the log ends; without debug information it says once
// how to get it.
func TestTraceDecoder(t *testing.T) {
	hello := kmsg.Record{Level: 6, Text: "c_hello: Hello, world, from C!"}
	warn, panicking, hung := traceLog(t, "warn-c"), traceLog(t, "rust-panic"), traceLog(t, "hung-task")
	for _, tt := range []struct {
		name      string
		sym       ktrace.Symbolizer
		records   [][]kmsg.Record
		want      []string // the decoded reports' titles, each after the number of records seen then
		wantNotes int
	}{
		{name: "each report after its end", sym: placing{},
			records: [][]kmsg.Record{{hello}, warn, {hello}, panicking, {hello}, hung, {hello}},
			want: []string{"37: WARNING in init_module (warn.c:6)", "77: Rust panic at /root/mod/rust_oops.rs:19:9: index out of bounds: the len is 3 but the index is 7",
				"98: INFO: task insmod:106 blocked for more than 122 seconds in hello_init [hello]"}},
		{name: "a report the log ends in", sym: placing{}, records: [][]kmsg.Record{{hello}, warn[:20]},
			want: []string{"end: WARNING in init_module (warn.c:6)"}},
		{name: "no debug information", sym: placing{none: true}, records: [][]kmsg.Record{warn[:3], {hello}, warn, warn},
			want: []string{"40: WARNING in init_module (warn.c:6)", "76: WARNING in init_module (warn.c:6)"}, wantNotes: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			var notes []string
			seen := 0
			d := &traceDecoder{sym: tt.sym, budget: time.Minute,
				emit: func(tr ktrace.Trace, first kmsg.Record) {
					at := "end"
					if seen > 0 {
						at = strconv.Itoa(seen)
					}
					got = append(got, at+": "+tr.Title)
				},
				say: func(s string) { notes = append(notes, s) }}
			ctx := context.Background()
			for _, rs := range tt.records {
				for _, r := range rs {
					seen++
					d.add(ctx, r)
				}
			}
			seen = 0
			d.flush(ctx)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("decoded:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if len(notes) != tt.wantNotes || (tt.wantNotes > 0 && notes[0] != module.NoDebugInfoNote) {
				t.Errorf("notes %q, want %d: %q", notes, tt.wantNotes, module.NoDebugInfoNote)
			}
		})
	}
}

// A decoded report prints after the records: for people under "decoded:", indented; with
// --json as a "trace" line carrying the first record's seq and time; --module keeps the
// reports of that module.
func TestTraceEmitter(t *testing.T) {
	warn := traceLog(t, "warn-c")
	tr := ktrace.Parse(warn)[0]
	first := kmsg.Record{Seq: 41, TS: 128130 * time.Millisecond, Level: 4, Text: warn[0].Text}
	for _, tt := range []struct {
		name   string
		json   bool
		module string
		want   string // a prefix of the output; "" for none
	}{
		{name: "text", want: "decoded: WARNING in init_module (warn.c:6)\n      WARNING at warn.c:6\n      RIP "},
		{name: "json", json: true, want: `{"schema":"kmodvm.logs/v1","seq":41,"time":128.13,"level":"warn","text":"WARNING in init_module (warn.c:6)","source":"trace","trace":{"kind":"warning"`},
		{name: "its module", module: "warn", want: "decoded: WARNING"},
		{name: "another module", module: "c_hello", want: ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			a := &app{stdout: &out, jsonOut: tt.json}
			a.traceEmitter(logFilter{maxLevel: -1, module: tt.module})(tr, first)
			if !strings.HasPrefix(out.String(), tt.want) || (tt.want == "") != (out.Len() == 0) {
				t.Errorf("output:\n%s\nwant it to start with:\n%s", out.String(), tt.want)
			}
		})
	}
}

// A report's relative paths ("WARNING at warn.c:6") are in the directory of the module its
// top frame is in, when kmodvm built that module on the host.
func TestTraceDecoderModuleSources(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "warn.c"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var got []ktrace.Trace
	d := &traceDecoder{budget: time.Minute, say: func(string) {},
		modules: map[string]module.HostBuilt{"warn": {Remote: module.RemoteDir(src), Source: src, Modules: []string{"warn"}}},
		emit:    func(tr ktrace.Trace, _ kmsg.Record) { got = append(got, tr) }}
	for _, r := range traceLog(t, "warn-c") {
		d.add(context.Background(), r)
	}
	if len(got) != 1 || len(got[0].Locations) == 0 || got[0].Locations[0].Host != filepath.Join(src, "warn.c") {
		t.Fatalf("decoded %+v; want the WARNING's location at %s", got, filepath.Join(src, "warn.c"))
	}
}
