package treesync

import (
	"errors"
	"path"
	"strconv"
	"strings"
	"testing"
)

func TestMatcher(t *testing.T) {
	m, err := NewMatcher("test", []string{
		"# a comment",
		"",
		"*.log",
		"notes/",
		"/scratch.txt",
		"docs/*.pdf",
		"!keep.o",
		"data?.bin",
		"**/gen/*.h",
		`\#literal`,
		"trailing   ",
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path  string
		isDir bool
		want  bool
	}{
		// Built-in build outputs (files only) and directories.
		{"hello.o", false, true},
		{"src/hello.o", false, true},
		{"hello.ko", false, true},
		{"hello.mod", false, true},
		{"hello.mod.c", false, true},
		{"hello.mod.o", false, true},
		{".hello.o.cmd", false, true},
		{"sub/.hello.ko.cmd", false, true},
		{"Module.symvers", false, true},
		{"modules.order", false, true},
		{"libkernel.rmeta", false, true},
		{"main.d", false, true},
		{"conf.d", true, false}, // a directory named like a build output is kept
		{"target", true, true},
		{"sub/target", true, true},
		{"target", false, false}, // "target/" matches directories only
		{".git", true, true},
		{".tmp_versions", true, true},
		// Sources are kept.
		{"hello.c", false, false},
		{"hello.rs", false, false},
		{"Makefile", false, false},
		{"Kbuild", false, false},
		{".kmodvmignore", false, false},
		{"hello.cmd", false, false}, // only hidden .*.cmd
		// User patterns.
		{"build.log", false, true},
		{"a/b/build.log", false, true},
		{"notes", true, true},
		{"notes", false, false},
		{"scratch.txt", false, true},
		{"sub/scratch.txt", false, false}, // anchored
		{"docs/a.pdf", false, true},
		{"x/docs/a.pdf", false, false}, // a '/' inside anchors
		{"keep.o", false, false},       // negation re-includes
		{"sub/keep.o", false, false},
		{"data1.bin", false, true},
		{"data12.bin", false, false},
		{"gen/x.h", false, true},
		{"a/b/gen/x.h", false, true},
		{"a/gen/sub/x.h", false, false},
		{"#literal", false, true},
		{"trailing", false, true},
	}
	for _, tt := range tests {
		if got := m.Ignored(tt.path, tt.isDir); got != tt.want {
			t.Errorf("Ignored(%q, dir=%v) = %v, want %v", tt.path, tt.isDir, got, tt.want)
		}
	}
}

func TestMatcherBadPattern(t *testing.T) {
	tests := []struct{ pattern, why string }{
		{"[unclosed", "syntax error"},
		// A pattern cannot reach out of the tree: ".." is refused, not left to match nothing.
		{"../secret", `".." cannot be used`},
		{"!../../etc/shadow", `".." cannot be used`},
		{"sub/../..", `".." cannot be used`},
		{"/..", `".." cannot be used`},
		{"**/../x/", `".." cannot be used`},
	}
	for _, tt := range tests {
		_, err := NewMatcher(".kmodvmignore", []string{"ok.txt", "..ok", "a..b/", tt.pattern})
		if err == nil {
			t.Errorf("pattern %q accepted, want an error", tt.pattern)
			continue
		}
		var te *TreeError
		if !errors.As(err, &te) {
			t.Errorf("pattern %q: error %T, want *TreeError", tt.pattern, err)
		}
		for _, want := range []string{".kmodvmignore line 4", strconv.Quote(tt.pattern), tt.why, "hint:"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
	}
}

// TestIgnoreFileLongLine: a line longer than any buffer must not hide the
// rules after it.
func TestIgnoreFileLongLine(t *testing.T) {
	data := "# " + strings.Repeat("x", 2<<20) + "\n*.secret\r\nlast.txt"
	m, err := NewMatcher(IgnoreFile, parseIgnoreFile([]byte(data)))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a.secret", "sub/b.secret", "last.txt"} {
		if !m.Ignored(p, false) {
			t.Errorf("%s is not ignored", p)
		}
	}
}

// plainName reports whether s is a pattern that only matches itself.
func plainName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "*?[\\/!# \r\x00")
}

// FuzzIgnore checks that any .kmodvmignore parses without a panic, that a
// bad line is reported with its number and a hint, and that the first
// rule, on any path, does what .gitignore's rules say: a plain name matches
// that base name at any depth, "/name" only at the top, "name/" only
// directories, and a later "!pattern" re-includes what pattern matched,
// even a build output.
func FuzzIgnore(f *testing.F) {
	f.Add("*.log\nnotes/\n/scratch.txt\n!keep.o\n", "src/keep.o", false)
	f.Add("**/gen/*.h", "a/b/gen/x.h", false)
	f.Add("[unclosed\n", "x", false)
	f.Add("build", "sub/build", true)
	f.Fuzz(func(t *testing.T, content, rel string, isDir bool) {
		lines := parseIgnoreFile([]byte(content))
		if len(lines) != strings.Count(content, "\n")+1 {
			t.Fatalf("%d lines from %q", len(lines), content)
		}
		m, err := NewMatcher(IgnoreFile, lines)
		if err != nil {
			if !strings.Contains(err.Error(), IgnoreFile+" line ") || !strings.Contains(err.Error(), "hint: ") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q does not name the line in one paragraph with a hint", err)
			}
			return
		}
		builtin, err := NewMatcher(IgnoreFile, nil)
		if err != nil {
			t.Fatal(err)
		}
		base := builtin.Ignored(rel, isDir)
		m.Ignored(rel, isDir)

		first := strings.TrimSuffix(lines[0], "\r")
		r, ok, err := parseRule(first)
		if err != nil || !ok || r.negate || CheckRel(rel) != nil { // the sync asks only about clean paths
			return
		}
		match := r.match(rel, isDir)
		one, _ := NewMatcher(IgnoreFile, []string{first})
		if got := one.Ignored(rel, isDir); got != (match || base) {
			t.Fatalf("rule %q on %q (dir %v): ignored %v, want %v", first, rel, isDir, got, match || base)
		}
		undone, err := NewMatcher(IgnoreFile, []string{first, "!" + first})
		if err != nil {
			t.Fatalf("%q parses but %q does not: %v", first, "!"+first, err)
		}
		if got := undone.Ignored(rel, isDir); got != (!match && base) {
			t.Fatalf("rules %q, %q on %q (dir %v): ignored %v, want %v", first, "!"+first, rel, isDir, got, !match && base)
		}
		name, dirOnly := strings.CutSuffix(first, "/")
		if dirOnly && !isDir && match {
			t.Fatalf("rule %q matches the file %q", first, rel)
		}
		var want bool
		switch {
		case plainName(name):
			want = path.Base(rel) == name
		case strings.HasPrefix(name, "/") && plainName(name[1:]):
			want = rel == name[1:]
		case strings.HasPrefix(name, "**/") && plainName(name[3:]):
			want = path.Base(rel) == name[3:]
		default:
			return
		}
		if match != (want && (isDir || !dirOnly)) {
			t.Fatalf("rule %q on %q (dir %v): match %v, want %v", first, rel, isDir, match, want && (isDir || !dirOnly))
		}
	})
}
