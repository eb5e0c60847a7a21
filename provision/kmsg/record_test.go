package kmsg

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseKmsgLine(t *testing.T) {
	tests := []struct {
		line string
		ok   bool
		want Record
	}{
		{"6,1234,5678901,-;hello: Hello, world", true,
			Record{Seq: 1234, Level: 6, Facility: 0, TS: 5678901 * time.Microsecond, Text: "hello: Hello, world"}},
		{"4,613,14903020,-,caller=T95;hello: module verification failed\n", true,
			Record{Seq: 613, Level: 4, TS: 14903020 * time.Microsecond, Text: "hello: module verification failed"}},
		{"12,7,100,c;user message; with a semicolon", true, // facility 1 (user), level 4
			Record{Seq: 7, Level: 4, Facility: 1, TS: 100 * time.Microsecond, Text: "user message; with a semicolon"}},
		{"0,733,40129931,-;rust_kernel: panicked at a.rs:1:2:\\x0aboom \\x5c end", true,
			Record{Seq: 733, Level: 0, TS: 40129931 * time.Microsecond, Text: "rust_kernel: panicked at a.rs:1:2:\nboom \\ end"}},
		{"6,1,2;three fields are enough", true, Record{Seq: 1, Level: 6, TS: 2 * time.Microsecond, Text: "three fields are enough"}},
		{"6,1,2,-;bad escape \\xZZ stays", true, Record{Seq: 1, Level: 6, TS: 2 * time.Microsecond, Text: "bad escape \\xZZ stays"}},
		{" SUBSYSTEM=module", false, Record{}},
		{"", false, Record{}},
		{"[    1.234567] console line", false, Record{}},
		{"6,x,2,-;bad seq", false, Record{}},
		{"6,1,-;missing ts", false, Record{}},
		{"6,1,99999999999999999999,-;ts overflows", false, Record{}},
		{"6,1,2,-", false, Record{}},
	}
	for _, tt := range tests {
		got, ok := ParseKmsgLine(tt.line)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseKmsgLine(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseConsoleLine(t *testing.T) {
	ts := 1234567 * time.Microsecond
	tests := []struct {
		line string
		ok   bool
		want Record
	}{
		{"[    1.234567] hello: Hello", true, Record{Level: -1, TS: ts, Text: "hello: Hello"}},
		{"[    1.234567] hello: Hello\r\n", true, Record{Level: -1, TS: ts, Text: "hello: Hello"}},
		{"[    1.234567][   T95] hello: Hello", true, Record{Level: -1, TS: ts, Text: "hello: Hello"}},
		{"[    1.234567][    C1] hello: Hello", true, Record{Level: -1, TS: ts, Text: "hello: Hello"}},
		{"[   T95] no time", true, Record{Level: -1, Text: "no time"}},
		{"<4>[    1.234567] warned", true, Record{Level: 4, TS: ts, Text: "warned"}},
		{"<12>[    1.234567] user", true, Record{Level: 4, Facility: 1, TS: ts, Text: "user"}},
		{"kern  :warn  : [    1.234567] warned", true, Record{Level: 4, TS: ts, Text: "warned"}},
		{"[12345.5] short fraction", true, Record{Level: -1, TS: 12345*time.Second + 500*time.Millisecond, Text: "short fraction"}},
		{"[    1.234567]  two spaces keep one", true, Record{Level: -1, TS: ts, Text: " two spaces keep one"}},
		{"[    1.234567]", true, Record{Level: -1, TS: ts}},
		{"kmodvm login:", false, Record{Level: -1, Text: "kmodvm login:"}},
		{"[ OK ] Started something", false, Record{Level: -1, Text: "[ OK ] Started something"}},
		{"[1.x] no", false, Record{Level: -1, Text: "[1.x] no"}},
		{"", false, Record{Level: -1}},
	}
	for _, tt := range tests {
		got, ok := ParseConsoleLine(tt.line)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseConsoleLine(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseLog(t *testing.T) {
	log := "Booting...\n" +
		"[    0.000000] Linux version 7.2.0\n" +
		"kmodvm login:\n" +
		"6,2,3000,-;from kmsg\n" +
		" SUBSYSTEM=module\n" +
		"\n" +
		"[    0.500000][    T1] last\n"
	recs := ParseLog(log)
	var texts []string
	for _, r := range recs {
		texts = append(texts, r.Text)
	}
	if got, want := strings.Join(texts, "|"), "Linux version 7.2.0|from kmsg|last"; got != want {
		t.Errorf("ParseLog texts = %q, want %q", got, want)
	}

	// No kernel prefix anywhere (printk.time=0): keep every line.
	recs = ParseLog("WARNING: at hello_init+0x1/0x2 [hello], CPU#0: insmod/1\nsecond\n")
	if len(recs) != 2 || recs[0].Level != -1 || Classify(recs).OK {
		t.Errorf("raw log: got %+v, want two records that classify as a WARNING", recs)
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		r         Record
		withLevel bool
		want      string
	}{
		{Record{Level: 4, TS: 1234567 * time.Microsecond, Text: "hi"}, true, "[    1.234567] <warn> hi"},
		{Record{Level: 4, TS: 1234567 * time.Microsecond, Text: "hi"}, false, "[    1.234567] hi"},
		{Record{Level: -1, TS: 123456 * time.Second, Text: "hi"}, true, "[123456.000000] hi"},
		{Record{Level: 0, Text: "a\nb"}, true, "[    0.000000] <emerg> a\n[    0.000000] <emerg> b"},
	}
	for _, tt := range tests {
		if got := tt.r.Format(tt.withLevel); got != tt.want {
			t.Errorf("%+v.Format(%v) = %q, want %q", tt.r, tt.withLevel, got, tt.want)
		}
	}
	// Format output parses back.
	r := Record{Level: 3, TS: 42 * time.Millisecond, Text: "round trip"}
	back, ok := ParseConsoleLine(r.Format(false))
	if !ok || back.TS != r.TS || back.Text != r.Text {
		t.Errorf("round trip of %+v gave %+v, %v", r, back, ok)
	}
}

func TestLevels(t *testing.T) {
	for i, name := range []string{"emerg", "alert", "crit", "err", "warn", "notice", "info", "debug"} {
		if got := LevelName(i); got != name {
			t.Errorf("LevelName(%d) = %q, want %q", i, got, name)
		}
		if got, err := ParseLevel(name); err != nil || got != i {
			t.Errorf("ParseLevel(%q) = %d, %v; want %d", name, got, err, i)
		}
	}
	if got := LevelName(-1); got != "unknown" {
		t.Errorf("LevelName(-1) = %q", got)
	}
	for in, want := range map[string]int{"4": 4, "WARNING": 4, " error ": 3, "0": 0, "7": 7} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"8", "-1", "loud", ""} {
		_, err := ParseLevel(in)
		if err == nil || !strings.Contains(err.Error(), "emerg, alert, crit, err, warn, notice, info, debug") {
			t.Errorf("ParseLevel(%q) error = %v, want one listing the names", in, err)
		}
	}
}

// escapeKmsg escapes text as /dev/kmsg does: every byte below ' ' or above
// '~', and the backslash, as \xNN.
func escapeKmsg(text string) string {
	var b strings.Builder
	for i := 0; i < len(text); i++ {
		if c := text[i]; c < ' ' || c > '~' || c == '\\' {
			fmt.Fprintf(&b, `\x%02x`, c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// FuzzParseKmsgLine checks that any line read from /dev/kmsg parses without
// a panic into a record in range, and that a record written back in the
// kernel's format parses to the same record. Seeds: testdata/fuzz.
func FuzzParseKmsgLine(f *testing.F) {
	f.Fuzz(func(t *testing.T, l string) {
		r, ok := ParseKmsgLine(l)
		if !ok {
			if r != (Record{}) {
				t.Fatalf("ParseKmsgLine(%q) failed but returned %+v", l, r)
			}
			return
		}
		checkRecord(t, r)
		if r.TS%time.Microsecond != 0 {
			t.Fatalf("ParseKmsgLine(%q): TS %v is not whole microseconds", l, r.TS)
		}
		again := fmt.Sprintf("%d,%d,%d,-;%s", r.Facility<<3|r.Level, r.Seq, r.TS/time.Microsecond, escapeKmsg(r.Text))
		back, ok := ParseKmsgLine(again)
		if !ok || back != r {
			t.Fatalf("ParseKmsgLine(%q) = %+v; written back as %q it parses to %+v, %v", l, r, again, back, ok)
		}
	})
}

// FuzzParseConsoleLine checks that any console or dmesg line parses without
// a panic, that the parser only strips a prefix, and that a record printed
// by Format parses back to the same time and text. Seeds: testdata/fuzz.
func FuzzParseConsoleLine(f *testing.F) {
	f.Fuzz(func(t *testing.T, l string) {
		r, ok := ParseConsoleLine(l)
		line := strings.TrimRight(l, "\r\n")
		checkRecord(t, r)
		if !ok {
			if r != (Record{Level: -1, Text: line}) {
				t.Fatalf("ParseConsoleLine(%q) failed but returned %+v", l, r)
			}
			return
		}
		if !strings.HasSuffix(line, r.Text) {
			t.Fatalf("ParseConsoleLine(%q): text %q is not what follows the prefix", l, r.Text)
		}
		if strings.Contains(r.Text, "\n") {
			return // Format prefixes every line
		}
		printed := r.Format(false)
		back, ok := ParseConsoleLine(printed)
		if !ok || back.TS != r.TS.Truncate(time.Microsecond) || back.Text != r.Text {
			t.Fatalf("ParseConsoleLine(%q) = %+v; printed as %q it parses to %+v, %v", l, r, printed, back, ok)
		}
	})
}
