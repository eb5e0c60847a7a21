package treesync

import (
	"errors"
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
