package treewatch

import (
	"testing"

	"github.com/kmodvm/kmodvm/provision/treesync"
)

func TestEditorTemp(t *testing.T) {
	tests := []struct {
		base string
		want bool
	}{
		{"4913", true}, // vim's probe
		{"5036", true}, // the next one, when 4913 is taken
		{"5159", true},
		{"4914", false},
		{"4790", false}, // below the first
		{"+4913", false},
		{"04913", false},
		{".hello.rs.swp", true},
		{".hello.rs.swo", true},
		{".hello.rs.swa", true},
		{"hello.swx", true},
		{".swp", false}, // a file named just that is the user's
		{"hello.sw", false},
		{"hello.swpp", false},
		{"hello.rs~", true},
		{".#hello.rs", true},
		{"#hello.rs#", true},
		{"#", false},
		{"##", false},
		{"#include", false},
		{"hello.rs___jb_tmp___", true},
		{"hello.rs___jb_old___", true},
		{".goutputstream-ABC123", true},
		{".hello.rs.kate-swp", true},
		{"hello.rs", false},
		{"Kbuild", false},
		{"Makefile", false},
		{".kmodvmignore", false},
		{"4913.c", false},
	}
	for _, tt := range tests {
		if got := EditorTemp(tt.base); got != tt.want {
			t.Errorf("EditorTemp(%q) = %v, want %v", tt.base, got, tt.want)
		}
	}
}

// TestSkip: what a sync leaves alone never starts a run, and neither does an editor's
// temporary file; everything else does.
func TestSkip(t *testing.T) {
	m, err := treesync.NewMatcher("test", []string{"docs/", "*.log", "!keep.o"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rel   string
		isDir bool
		want  bool
	}{
		{rel: "hello.rs"},
		{rel: "Kbuild"},
		{rel: "sub", isDir: true},
		{rel: "sub/hello.c"},
		{rel: ".kmodvmignore"},
		// Build outputs: what kbuild writes when someone runs make in the directory.
		{rel: "hello.o", want: true},
		{rel: "hello.ko", want: true},
		{rel: "hello.mod.c", want: true},
		{rel: ".hello.o.cmd", want: true},
		{rel: "Module.symvers", want: true},
		{rel: "modules.order", want: true},
		{rel: "sub/hello.o", want: true},
		{rel: "keep.o"},               // re-included by .kmodvmignore
		{rel: "hello.o", isDir: true}, // build-output rules match files only
		{rel: "target", isDir: true, want: true},
		{rel: "target/debug/x", want: true},
		{rel: ".git", isDir: true, want: true},
		{rel: ".git/index", want: true},
		{rel: ".tmp_versions/x.mod", want: true},
		{rel: "docs", isDir: true, want: true}, // .kmodvmignore patterns
		{rel: "docs/notes.md", want: true},
		{rel: "build.log", want: true},
		{rel: ".kmodvm-sync.json", want: true}, // the sync's own names
		{rel: ".hello.rs.kmodvm-tmp-0123abcd", want: true},
		// Editors' temporary files, anywhere.
		{rel: "4913", want: true},
		{rel: "sub/.hello.c.swp", want: true},
		{rel: "hello.rs~", want: true},
		{rel: ".#hello.rs", want: true},
		{rel: "hello.rs___jb_tmp___", want: true},
		{rel: "old~", isDir: true}, // a directory is never an editor's temporary file
	}
	for _, tt := range tests {
		if got := skip(m, tt.rel, tt.isDir); got != tt.want {
			t.Errorf("skip(%q, dir %v) = %v, want %v", tt.rel, tt.isDir, got, tt.want)
		}
	}
}
