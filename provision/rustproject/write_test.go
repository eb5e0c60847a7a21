package rustproject

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Write writes a new file, leaves an identical one alone, replaces the one it wrote, and
// never replaces a file it did not write or that was edited since.
func TestWrite(t *testing.T) {
	type step struct {
		before  func(path string) // what happens to the file before the write
		data    string
		changed bool
		notOurs bool
		after   string // the file's content after the step
		aside   string // the name the refusal's hint moves the file to, after the path; "" is .orig
	}
	edit := func(s string) func(string) {
		return func(path string) {
			if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{name: "new, again, updated", steps: []step{
			{data: "v1", changed: true, after: "v1"},
			{data: "v1", changed: false, after: "v1"},
			{data: "v2", changed: true, after: "v2"},
		}},
		{name: "the user's own file", steps: []step{
			{before: edit("mine"), data: "v1", notOurs: true, after: "mine"},
			{data: "v1", notOurs: true, after: "mine"},
		}},
		{name: "the user's own file with kmodvm's content is kmodvm's from then on", steps: []step{
			{before: edit("v1"), data: "v1", changed: false, after: "v1"},
			{data: "v2", changed: true, after: "v2"},
		}},
		{name: "kmodvm's file edited since", steps: []step{
			{data: "v1", changed: true, after: "v1"},
			{before: edit("v1 with my crate"), data: "v2", notOurs: true, after: "v1 with my crate"},
		}},
		{name: "moved away, then written anew", steps: []step{
			{before: edit("mine"), data: "v1", notOurs: true, after: "mine"},
			{before: func(p string) { os.Rename(p, p+".orig") }, data: "v1", changed: true, after: "v1"},
			{before: edit("mine again"), data: "v2", notOurs: true, aside: ".orig.2", after: "mine again"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, records := t.TempDir(), filepath.Join(t.TempDir(), "ide")
			path := filepath.Join(dir, FileName)
			for i, s := range tc.steps {
				if s.before != nil {
					s.before(path)
				}
				changed, err := Write(path, []byte(s.data), records)
				var no *NotOursError
				if errors.As(err, &no) != s.notOurs || (err != nil && !s.notOurs) {
					t.Fatalf("step %d: Write: %v; want refused %v", i, err, s.notOurs)
				}
				if s.notOurs {
					aside := s.aside
					if aside == "" {
						aside = ".orig"
					}
					if !strings.Contains(err.Error(), "hint: move it away (mv '"+path+"' '"+path+aside+"')") {
						t.Errorf("step %d: the refusal's hint does not move the file to %s: %v", i, path+aside, err)
					}
				}
				if changed != s.changed {
					t.Errorf("step %d: changed %v, want %v", i, changed, s.changed)
				}
				if got := readTestFile(t, path); got != s.after {
					t.Errorf("step %d: the file holds %q, want %q", i, got, s.after)
				}
			}
		})
	}
}

func TestWriteRefusesASymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere.json")
	writeTestFile(t, target, "mine")
	path := filepath.Join(dir, FileName)
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	var no *NotOursError
	if _, err := Write(path, []byte("v1"), t.TempDir()); !errors.As(err, &no) || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("Write over a symlink: %v", err)
	}
	if got := readTestFile(t, target); got != "mine" {
		t.Errorf("the symlink's target holds %q", got)
	}
}
