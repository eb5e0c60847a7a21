package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/provision/guestlog"
	"github.com/kmodvm/kmodvm/provision/kmsg"
	"github.com/kmodvm/kmodvm/provision/ktrace"
)

func TestMentionsModule(t *testing.T) {
	tests := []struct {
		text, module string
		want         bool
	}{
		{"rust_hello: Hello from Rust!", "rust_hello", true},
		{"rust_hello: Hello from Rust!", "rust-hello", true}, // the file name's spelling
		{"rust-hello: odd pr_fmt", "rust_hello", true},
		{"RIP: 0010:hello_init+0x5/0x10 [rust_hello]", "rust_hello", true},
		{"RIP: 0010:hello_init+0x5/0x10 [rust_hello]", "rust-hello", true},
		{"hello_mod: loading out-of-tree module taints kernel.", "hello_mod", true},
		{"other_mod: loaded", "rust_hello", false},
		{"rust_hello_extra: a different module", "rust_hello", false},
		{"my_rust_hello: a different module", "rust_hello", false},
		{"[rust_hello_extra]", "rust_hello", false},
		{"rust_hello", "rust_hello", false}, // the bare name is no pr_* prefix
		{"panicked at src/lib.rs:9:5: rust_hello: boom", "rust_hello", true},
	}
	for _, tt := range tests {
		if got := mentionsModule(tt.text, tt.module); got != tt.want {
			t.Errorf("mentionsModule(%q, %q) = %v, want %v", tt.text, tt.module, got, tt.want)
		}
	}
}

func TestLogFilterKeep(t *testing.T) {
	rec := func(level int, text string) kmsg.Record { return kmsg.Record{Level: level, Text: text} }
	tests := []struct {
		name   string
		filter logFilter
		rec    kmsg.Record
		want   bool
	}{
		{"all: debug", logFilter{maxLevel: -1}, rec(7, "x: debug"), true},
		{"all: no level", logFilter{maxLevel: -1}, rec(-1, "console line"), true},
		{"warn: err", logFilter{maxLevel: 4}, rec(3, "x: err"), true},
		{"warn: warn", logFilter{maxLevel: 4}, rec(4, "x: warn"), true},
		{"warn: emerg", logFilter{maxLevel: 4}, rec(0, "Kernel panic"), true},
		{"warn: notice", logFilter{maxLevel: 4}, rec(5, "x: notice"), false},
		{"warn: info", logFilter{maxLevel: 4}, rec(6, "x: info"), false},
		{"warn: console line without level", logFilter{maxLevel: 4}, rec(-1, "BUG: oops"), true},
		{"emerg: alert", logFilter{maxLevel: 0}, rec(1, "x"), false},
		{"emerg: emerg", logFilter{maxLevel: 0}, rec(0, "x"), true},
		{"module: its line", logFilter{maxLevel: -1, module: "hello"}, rec(6, "hello: hi"), true},
		{"module: another's line", logFilter{maxLevel: -1, module: "hello"}, rec(6, "other: hi"), false},
		{"module and level: both match", logFilter{maxLevel: 4, module: "rust-hello"}, rec(4, "RIP: 0010:f+0x1/0x2 [rust_hello]"), true},
		{"module and level: too verbose", logFilter{maxLevel: 4, module: "rust_hello"}, rec(6, "rust_hello: hi"), false},
		{"module and level: another module", logFilter{maxLevel: 4, module: "rust_hello"}, rec(3, "other: err"), false},
	}
	for _, tt := range tests {
		if got := tt.filter.keep(tt.rec); got != tt.want {
			t.Errorf("%s: keep(%+v) = %v, want %v", tt.name, tt.rec, got, tt.want)
		}
	}
}

func TestLogEmitter(t *testing.T) {
	recs := []kmsg.Record{
		{Seq: 7, Level: 6, TS: 12345678 * time.Microsecond, Text: "rust_hello: Hello"},
		{Seq: 8, Level: 7, TS: 12400000 * time.Microsecond, Text: "rust_hello: debug noise"},
		{Level: -1, TS: 13 * time.Second, Text: "other: from the console"},
		{Seq: 9, Level: 4, TS: 14 * time.Second, Text: "WARNING: at hello.c:3\nsecond line"},
	}
	filter := logFilter{maxLevel: 6}
	t.Run("text", func(t *testing.T) {
		var out bytes.Buffer
		emit := (&app{stdout: &out}).logEmitter(filter)
		for _, r := range recs {
			emit(r, "kmsg")
		}
		want := "[   12.345678] <info> rust_hello: Hello\n" +
			"[   13.000000] other: from the console\n" +
			"[   14.000000] <warn> WARNING: at hello.c:3\n" +
			"[   14.000000] <warn> second line\n"
		if out.String() != want {
			t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
		}
	})
	t.Run("json", func(t *testing.T) {
		var out bytes.Buffer
		emit := (&app{stdout: &out, jsonOut: true}).logEmitter(filter)
		for i, r := range recs {
			src := "kmsg"
			if i == 2 {
				src = "console"
			}
			emit(r, src)
		}
		want := []logLine{
			{Schema: schemaLogs, Seq: 7, Time: 12.345678, Level: "info", Text: "rust_hello: Hello", Source: "kmsg"},
			{Schema: schemaLogs, Time: 13, Text: "other: from the console", Source: "console"},
			{Schema: schemaLogs, Seq: 9, Time: 14, Level: "warn", Text: "WARNING: at hello.c:3\nsecond line", Source: "kmsg"},
		}
		lines, got := logLines(t, out.String(), len(want))
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("line %d = %+v, want %+v", i+1, got[i], want[i])
			}
		}
		if strings.Contains(lines[1], `"seq"`) || strings.Contains(lines[1], `"level"`) {
			t.Errorf("a console record without seq and level has them in JSON: %s", lines[1])
		}
	})
}

// logLines splits `logs --json` output into its lines and decodes each; it fails the test
// unless there are n, each a JSON object.
func logLines(t *testing.T, out string, n int) ([]string, []logLine) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), n, out)
	}
	recs := make([]logLine, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &recs[i]); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", i+1, err, l)
		}
	}
	return lines, recs
}

// consoleRec is what a test compares of an emitted record.
type consoleRec struct {
	TS     time.Duration
	Level  int
	Text   string
	Source string
}

func TestFollowConsoleOnce(t *testing.T) {
	log := "SeaBIOS (version 1.16.3-debian-1.16.3-2)\r\n" +
		"[    0.000000] Linux version 7.2.13-kmodvm-1a2b3c4d (root@kmodvm) #1 SMP\r\n" +
		"[    1.234567][   T95] rust_hello: Hello from Rust!\n" +
		"<4>[    2.500000] WARNING: CPU: 0 PID: 95 at hello.c:12 hello_init+0x5/0x10 [hello]\n" +
		"\n" +
		"login: \n" +
		"[    3.000000] Kernel panic - not syncing: Fatal exception" // a crash cut it short
	want := []consoleRec{
		{0, -1, "Linux version 7.2.13-kmodvm-1a2b3c4d (root@kmodvm) #1 SMP", "console"},
		{1234567 * time.Microsecond, -1, "rust_hello: Hello from Rust!", "console"},
		{2500 * time.Millisecond, 4, "WARNING: CPU: 0 PID: 95 at hello.c:12 hello_init+0x5/0x10 [hello]", "console"},
		{3 * time.Second, -1, "Kernel panic - not syncing: Fatal exception", "console"},
	}
	path := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []consoleRec
	err := followConsole(ctx, path, false, func(r kmsg.Record, src string) {
		got = append(got, consoleRec{r.TS, r.Level, r.Text, src})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d:\n%+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestFollowConsoleMissing(t *testing.T) {
	err := followConsole(context.Background(), filepath.Join(t.TempDir(), "nope.log"), false, func(kmsg.Record, string) {
		t.Error("emitted a record from a file that does not exist")
	})
	if err == nil || !strings.Contains(err.Error(), "read console log") {
		t.Errorf("err = %v, want one about reading the console log", err)
	}
}

// TestFollowConsoleFollows: with follow, lines appended later are emitted, a line written in
// two pieces is one record, and a truncated or replaced log is read from its start. The
// deadlines only keep a broken follow from hanging the test.
func TestFollowConsoleFollows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	write := func(flag int, s string) {
		t.Helper()
		f, err := os.OpenFile(path, flag|os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write(os.O_TRUNC, "[    1.000000] first boot: one\n")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	recs := make(chan string, 16)
	done := make(chan error, 1)
	go func() {
		done <- followConsole(ctx, path, true, func(r kmsg.Record, _ string) { recs <- r.Text })
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-recs:
			if got != want {
				t.Fatalf("record %q, want %q", got, want)
			}
		case err := <-done:
			t.Fatalf("followConsole returned %v before emitting %q", err, want)
		case <-ctx.Done():
			t.Fatalf("no record %q within the test's deadline", want)
		}
	}

	expect("first boot: one")
	write(os.O_APPEND, "[    2.000000] first boot: two, appended\n")
	expect("first boot: two, appended")
	write(os.O_APPEND, "[    3.000000] first boot: written ")
	write(os.O_APPEND, "in two pieces\n")
	expect("first boot: written in two pieces")

	// Truncated, then a shorter log written: read from the start.
	write(os.O_TRUNC, "[    0.100000] second boot\n")
	expect("second boot")

	// Replaced by a new file (a new VM of the same name): read the new file.
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte("[    0.200000] third boot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	expect("third boot")

	cancel()
	if err := <-done; err != nil {
		t.Errorf("followConsole after cancel = %v, want nil (Ctrl-C ends a follow)", err)
	}
	select {
	case r := <-recs:
		t.Errorf("unexpected record %q", r)
	default:
	}
}

// kmsgStream produces n /dev/kmsg lines ("6,SEQ,USEC,-;spam: line I/N"), generated as they
// are read, so the test itself holds no more than one line either.
type kmsgStream struct {
	i, n int
	buf  []byte
}

func (s *kmsgStream) Read(p []byte) (int, error) {
	for len(s.buf) == 0 {
		if s.i == s.n {
			return 0, io.EOF
		}
		s.i++
		s.buf = fmt.Appendf(s.buf[:0], "6,%d,%d,-;spam: line %d/%d\n", s.i, s.i*10, s.i, s.n)
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

// TestFollowMemoryFlat: the live heap while following does not grow with the number of
// records read and printed (logs -f runs for days). It is measured after a GC at the
// 10,000th and at the 300,000th record; keeping each record would add over 20 MB.
func TestFollowMemoryFlat(t *testing.T) {
	const n, early = 300_000, 10_000
	emit := (&app{stdout: io.Discard}).logEmitter(logFilter{maxLevel: -1})
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var at10k, atEnd uint64
	count := 0
	err := (&guestlog.Scanner{}).Scan(&kmsgStream{n: n}, func(r kmsg.Record) {
		emit(r, "kmsg")
		count++
		switch count {
		case early:
			at10k = heap()
		case n:
			atEnd = heap()
		}
	}, func(from, n uint64) { t.Errorf("lost %d records from %d in a stream without gaps", n, from) })
	if err != nil {
		t.Fatal(err)
	}
	if count != n {
		t.Fatalf("%d records, want %d", count, n)
	}
	t.Logf("live heap: %d KiB after %d records, %d KiB after %d", at10k>>10, early, atEnd>>10, n)
	if atEnd > at10k+1<<20 {
		t.Errorf("live heap grew from %d KiB to %d KiB between record %d and %d", at10k>>10, atEnd>>10, early, n)
	}
}

// BenchmarkFollowKmsg: what the host side of `logs -f` (parse, format, write) costs per
// record; the guest and the SSH link set the pace in practice.
func BenchmarkFollowKmsg(b *testing.B) {
	emit := (&app{stdout: io.Discard}).logEmitter(logFilter{maxLevel: -1})
	b.ReportAllocs()
	err := (&guestlog.Scanner{}).Scan(&kmsgStream{n: b.N}, func(r kmsg.Record) { emit(r, "kmsg") }, func(uint64, uint64) {})
	if err != nil {
		b.Fatal(err)
	}
}

// `logs` prints Rust symbols demangled and the source paths the kernel prints at the host's
// files when they are there; the JSON carries the same text.
func TestLogsReadable(t *testing.T) {
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "rust_oops.rs"), []byte("fn x() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := ktrace.Mapper{GuestModuleDir: "/root/kmodvm/src/rust_oops-12345678", HostModuleDir: host}
	recs := []kmsg.Record{
		{Seq: 1, Level: 0, TS: time.Second, Text: "rust_kernel: panicked at /root/kmodvm/src/rust_oops-12345678/rust_oops.rs:19:9:"},
		{Seq: 2, Level: 4, TS: time.Second, Text: " _RNvXCs7pXBtqNa9yW_9rust_oopsNtB2_8RustOopsNtCsbDqzXfLQacH_6kernel6Module4init+0x61/0x70 [rust_oops]"},
		{Seq: 3, Level: 4, TS: time.Second, Text: "RIP: 0010:_RNvCsbDqzXfLQacH_6kernel14rust_panic_fmt+0x52/0x60\n kernel BUG at rust/helpers/bug.c:7!"},
	}
	want := []string{
		"rust_kernel: panicked at " + filepath.Join(host, "rust_oops.rs") + ":19:9:",
		" <rust_oops::RustOops as kernel::Module>::init+0x61/0x70 [rust_oops]",
		"RIP: 0010:kernel::rust_panic_fmt+0x52/0x60\n kernel BUG at rust/helpers/bug.c:7!", // no kernel source here: as printed
	}
	t.Run("text", func(t *testing.T) {
		var out bytes.Buffer
		emit := readableRecords(m, (&app{stdout: &out}).logEmitter(logFilter{maxLevel: -1}))
		for _, r := range recs {
			emit(r, "kmsg")
		}
		got := out.String()
		for _, w := range want {
			for l := range strings.SplitSeq(w, "\n") {
				if !strings.Contains(got, l+"\n") {
					t.Errorf("output lacks %q:\n%s", l, got)
				}
			}
		}
		if strings.Contains(got, "_RNv") {
			t.Errorf("a mangled symbol is printed:\n%s", got)
		}
	})
	t.Run("json", func(t *testing.T) {
		var out bytes.Buffer
		emit := readableRecords(m, (&app{stdout: &out, jsonOut: true}).logEmitter(logFilter{maxLevel: -1}))
		for _, r := range recs {
			emit(r, "kmsg")
		}
		_, got := logLines(t, out.String(), len(want))
		for i := range got {
			if got[i].Text != want[i] {
				t.Errorf("text %q, want %q", got[i].Text, want[i])
			}
		}
	})
}
