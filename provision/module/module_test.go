package module

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/provision/treesync"
)

func TestDetect(t *testing.T) {
	mk := func(files map[string]string) string {
		dir := t.TempDir()
		for p, s := range files {
			os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
			os.WriteFile(filepath.Join(dir, p), []byte(s), 0o644)
		}
		return dir
	}
	cases := []struct {
		name    string
		files   map[string]string
		modules []string
		err     string
	}{
		{"rust kbuild", map[string]string{"Kbuild": "obj-m := rust_hello.o\n", "rust_hello.rs": ""}, []string{"rust_hello"}, ""},
		{"c makefile", map[string]string{"Makefile": "obj-m += c-hello.o\nall:\n\tmake\n", "c-hello.c": ""}, []string{"c_hello"}, ""},
		{"two modules, continuation", map[string]string{"Kbuild": "obj-m := a.o \\\n  b.o\nobj-$(CONFIG_FOO) += c.o\n"}, []string{"a", "b", "c"}, ""},
		{"no kbuild", map[string]string{"x.c": ""}, nil, "no Kbuild or Makefile"},
		{"no obj-m", map[string]string{"Makefile": "all:\n\ttrue\n"}, nil, "names no module"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, err := Detect(mk(c.files))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(src.Modules, ",") != strings.Join(c.modules, ",") {
				t.Errorf("got %+v", src)
			}
		})
	}
	if _, err := Detect(filepath.Join(t.TempDir(), "nope")); err == nil || !strings.Contains(err.Error(), "hint:") {
		t.Errorf("missing dir: %v", err)
	}
	// What the sync would refuse is refused by Detect, before anything connects.
	out := mk(map[string]string{"Kbuild": "obj-m := a.o\n"})
	if err := os.Symlink("/etc/shadow", filepath.Join(out, "shadow")); err != nil {
		t.Fatal(err)
	}
	var te *treesync.TreeError
	if _, err := Detect(out); !errors.As(err, &te) || !strings.Contains(err.Error(), "shadow -> /etc/shadow points outside") {
		t.Errorf("symlink out of the tree: err = %v, want a *treesync.TreeError naming it", err)
	}
}

func TestRemoteDir(t *testing.T) {
	a := RemoteDir("/home/me/my module; $(rm -rf /)")
	if !strings.HasPrefix(a, "/root/kmodvm/src/") || strings.ContainsAny(strings.TrimPrefix(a, "/root/kmodvm/src/"), " ;$()/") {
		t.Errorf("unsafe remote dir %q", a)
	}
	if RemoteDir("/a/x") == RemoteDir("/b/x") {
		t.Error("two module dirs with the same name share a remote dir")
	}
	if got, want := RemoteDir("/a/x"), "/root/kmodvm/src/x-"; !strings.HasPrefix(got, want) || len(got) != len(want)+8 {
		t.Errorf("RemoteDir(/a/x) = %q, want %s<8 hex>", got, want)
	}
}

func TestRewritePaths(t *testing.T) {
	out := "error[E0308]: mismatched types\n --> /root/kmodvm/src/m-1234/broken.rs:15:22\n/root/kmodvm/src/m-1234/x.c:3:1: error: y\nmake -C ... M=/root/kmodvm/src/m-1234\n"
	got := RewritePaths(out, "/root/kmodvm/src/m-1234", "/home/me/m")
	for _, want := range []string{"--> /home/me/m/broken.rs:15:22", "/home/me/m/x.c:3:1: error", "M=/home/me/m\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}

func TestRewriteRelativePaths(t *testing.T) {
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "broken.rs"), nil, 0o644)
	os.WriteFile(filepath.Join(host, "x.c"), nil, 0o644)
	out := "error[E0308]: mismatched types\n  --> broken.rs:15:22\nx.c:3:1: error: y\nnot.c:1:1: error: a file that is not in the module\n"
	got := RewritePaths(out, "/root/kmodvm/src/m-1", host)
	for _, want := range []string{"  --> " + host + "/broken.rs:15:22", host + "/x.c:3:1: error", "\nnot.c:1:1:"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}

func TestParseStep(t *testing.T) {
	out := strings.Join([]string{
		"kmodvm-taint 0",
		"6,40,100,-;old record",
		"6,41,101,-;the newest record before the command",
		" SUBSYSTEM=foo",
		"kmodvm-run",
		"kmodvm-taint 12288",
		"kmodvm-rc 1",
		"4,42,2000000,-;x: loading out-of-tree module taints kernel.",
		" SUBSYSTEM=foo",
		"6,43,2000100,-;x: init failed",
		"kmodvm-err insmod: ERROR: could not insert module x.ko: Invalid parameters",
		"kmodvm-err ",
		"kmodvm-end",
	}, "\n")
	so := parseStep(out, logCursor{})
	if !so.complete || so.rc != 1 || so.taint != 0 || so.taint2 != 12288 || so.stale || so.staleFail != "" {
		t.Fatalf("parsed %+v", so)
	}
	if len(so.records) != 2 || so.records[0].Seq != 42 || so.records[1].Text != "x: init failed" {
		t.Fatalf("records since the cursor: %+v", so.records)
	}
	if len(so.errText) != 1 || !strings.Contains(so.errText[0], "Invalid parameters") {
		t.Fatalf("errText %q", so.errText)
	}
	if parseStep("kmodvm-taint 0\n6,3,1,-;x\nkmodvm-run\n", logCursor{}).complete {
		t.Error("a step cut off before kmodvm-end counts as complete")
	}
	so = parseStep("kmodvm-stale\nkmodvm-stale-failed rmmod: ERROR: Module x is in use\nkmodvm-stale-failed second line\n", logCursor{})
	if !so.stale || so.staleFail != "rmmod: ERROR: Module x is in use; second line" {
		t.Errorf("stale unload failure not parsed: %+v", so)
	}
}

// TestParseStepCursor: a step's records are those after the last one the previous step
// read (or, for the first step, those after the command started), so what a module logs
// between two steps is judged too; records the guest overwrote before the read are counted
// from the gaps in the numbers, never guessed from records before the cursor.
func TestParseStepCursor(t *testing.T) {
	step := func(before string, after ...string) string {
		return "kmodvm-taint 0\n" + before + "kmodvm-run\nkmodvm-rc 0\n" + strings.Join(after, "\n") + "\nkmodvm-end\n"
	}
	none := logCursor{}
	tests := []struct {
		name     string
		out      string
		prev     logCursor
		wantSeqs string
		wantLost int
		wantLast logCursor
	}{
		{"nothing lost", step("6,40,1,-;a\n6,41,1,-;b\n", "6,42,2,-;c", "6,43,2,-;d"), none, "[42 43]", 0, logCursor{43, true}},
		{"the buffer wrapped past the cursor", step("6,40,1,-;a\n6,41,1,-;b\n", "6,45,2,-;f", "6,46,2,-;g"), none, "[45 46]", 3, logCursor{46, true}},
		{"a gap among the new records", step("6,41,1,-;b\n", "6,42,2,-;c", "6,44,2,-;e", "6,47,2,-;h"), none, "[42 44 47]", 3, logCursor{47, true}},
		{"no cursor, nothing to compare with", step("", "6,45,2,-;f", "6,46,2,-;g"), none, "[45 46]", 0, logCursor{46, true}},
		{"nothing new", step("6,40,1,-;a\n6,41,1,-;b\n"), none, "[]", 0, logCursor{41, true}},
		{"logged between the steps", step("6,39,1,-;z\n6,40,1,-;a\n6,41,1,-;b\n", "6,42,2,-;c"), logCursor{39, true}, "[40 41 42]", 0, logCursor{42, true}},
		{"logged between the steps, partly overwritten", step("6,38,1,-;y\n6,39,1,-;z\n6,40,1,-;a\n6,41,1,-;b\n"), logCursor{30, true}, "[38 39 40 41]", 7, logCursor{41, true}},
		{"previous step before a guest restart", step("6,41,1,-;b\n", "6,42,2,-;c"), logCursor{500, true}, "[42]", 0, logCursor{42, true}},
		{"previous step, nothing before", step("", "6,42,2,-;c"), logCursor{40, true}, "[42]", 1, logCursor{42, true}},
		{"the overrun during the drain before", step("6,30,1,-;a\n6,35,1,-;f\n", "6,36,2,-;g"), logCursor{30, true}, "[35 36]", 4, logCursor{36, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			so := parseStep(tt.out, tt.prev)
			seqs := []uint64{}
			for _, r := range so.records {
				seqs = append(seqs, r.Seq)
			}
			if got := fmt.Sprint(seqs); got != tt.wantSeqs || so.lost != tt.wantLost || so.last != tt.wantLast {
				t.Errorf("records %s, lost %d, last %+v; want %s, lost %d, last %+v", got, so.lost, so.last, tt.wantSeqs, tt.wantLost, tt.wantLast)
			}
		})
	}
}

// FuzzParseStep: whatever a step prints (a guest cut off mid-line, a module printing
// garbage), parseStep returns records in order after the cursor, and counts no loss the
// numbers do not show.
func FuzzParseStep(f *testing.F) {
	f.Add("kmodvm-taint 0\n6,40,1,-;a\nkmodvm-run\nkmodvm-rc 1\n6,42,2,-;c\nkmodvm-err x\nkmodvm-end\n", uint64(39), true)
	f.Add("kmodvm-stale\nkmodvm-stale-failed in use\n", uint64(0), false)
	f.Fuzz(func(t *testing.T, out string, prevSeq uint64, prevOK bool) {
		prev := logCursor{prevSeq, prevOK}
		so := parseStep(out, prev)
		if so.lost < 0 {
			t.Fatalf("lost %d", so.lost)
		}
		for i, r := range so.records {
			if i > 0 && r.Seq <= so.records[i-1].Seq {
				t.Fatalf("records out of order: %d after %d", r.Seq, so.records[i-1].Seq)
			}
		}
		if n := len(so.records); n > 0 && so.last.seq != so.records[n-1].Seq {
			t.Errorf("last %d, want the last record %d", so.last.seq, so.records[n-1].Seq)
		}
	})
}

// The load step runs guest.sh for real in the fake guest: the module path and parameter
// words reach insmod as single words whatever they contain, and none runs in the shell.
func TestLoadArgumentsReachInsmodExactly(t *testing.T) {
	g := newFakeGuest(t)
	g.write("insmod.sh", `for a; do echo "[$a]"; done; echo 'insmod: ERROR: could not insert module: Invalid parameters' >&2; exit 1`, 0o644)
	r := g.runner(nil)
	r.guest = g
	canary := filepath.Join(g.dir, "pwned")
	params := []string{"greeting=hello world", "x=$(touch " + canary + ")", "y=a;b", `z='"q"'`}
	st, err := r.step(testCtx(t), Options{Timeout: time.Minute}, "load", "rust_hello", 1, append([]string{"*.*", "rust_hello", "/root/kmodvm/src/my mod/a.ko"}, params...)...)
	if err != nil {
		t.Fatal(err)
	}
	want := "[/root/kmodvm/src/my mod/a.ko]; [greeting=hello world]; [x=$(touch " + canary + ")]; [y=a;b]; [z='\"q\"']; insmod: ERROR: could not insert module: Invalid parameters"
	if st.OK || !strings.HasPrefix(st.Error, want) {
		t.Errorf("step %+v\nwant error starting with\n%s", st, want)
	}
	if _, err := os.Stat(canary); err == nil {
		t.Error("a parameter was interpreted by the shell")
	}
}

func TestExplainFailure(t *testing.T) {
	so := parseStep("kmodvm-run\n3,5,1,-;hello: Unknown symbol not_a_symbol (err -2)\n", logCursor{})
	msg := explainFailure("load", "hello", []string{"insmod: ERROR: could not insert module hello.ko: Unknown symbol in module"}, so.records)
	if !strings.Contains(msg, "not_a_symbol") {
		t.Errorf("unknown symbol not named: %s", msg)
	}
	msg = explainFailure("load", "hello", []string{"insmod: ERROR: could not insert module hello.ko: Invalid module format"}, nil)
	if !strings.Contains(msg, "another kernel") {
		t.Errorf("vermagic not explained: %s", msg)
	}
}

// TestBuiltKosNotFollowed: a host build (the module's own Makefile) may leave a symlink named
// like a module pointing at a host file; it is neither listed as built nor read.
func TestBuiltKosNotFollowed(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(t.TempDir(), "id_ed25519")
	for p, s := range map[string]string{"real.ko": "ELF", "real.o": "obj", secret: "PRIVATE"} {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(secret, filepath.Join(dir, "evil.ko")); err != nil {
		t.Fatal(err)
	}
	kos, err := builtKos(dir)
	if err != nil || strings.Join(kos, ",") != "real.ko" {
		t.Errorf("builtKos = %q, %v; want only real.ko", kos, err)
	}
	if data, err := readKo(filepath.Join(dir, "evil.ko")); err == nil {
		t.Errorf("readKo followed the symlink and read %q", data)
	}
	if data, err := readKo(filepath.Join(dir, "real.ko")); err != nil || string(data) != "ELF" {
		t.Errorf("readKo(real.ko) = %q, %v", data, err)
	}
}

func TestConsoleRecordsAfterAnOverlongLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	log := "[    1.000000] before\r\n" +
		strings.Repeat("x", 3<<20) + "\r\n" + // a module printing garbage, no record
		"[    2.000000] Kernel panic - not syncing: deliberate panic\r\n" +
		"[    2.100000] last line without a newline"
	if err := os.WriteFile(p, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range consoleRecords(p, 0) {
		got = append(got, r.Text)
	}
	want := []string{"before", "Kernel panic - not syncing: deliberate panic", "last line without a newline"}
	if !slices.Equal(got, want) {
		t.Errorf("records = %q, want %q", got, want)
	}
}

func TestEachLineCutsLongLines(t *testing.T) {
	var lines []string
	in := "ab\n" + strings.Repeat("y", 200) + "\ncd"
	if err := eachLine(strings.NewReader(in), 10, func(l string) { lines = append(lines, l) }); err != nil {
		t.Fatal(err)
	}
	want := []string{"ab", strings.Repeat("y", 10), "cd"}
	if !slices.Equal(lines, want) {
		t.Errorf("lines = %q, want %q", lines, want)
	}
}
