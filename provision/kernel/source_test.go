package kernel

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A local tree's identity changes with every edit a build would see: commits, edits to
// tracked files, and new or edited untracked files (a new driver not yet added to git);
// it does not change when nothing did, nor for files git ignores.
func TestTreeIdentityFollowsEdits(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	writeFile(t, filepath.Join(dir, "Makefile"), "all:\n")
	writeFile(t, filepath.Join(dir, ".gitignore"), "*.o\n")
	git("init", "-q")
	git("add", ".")
	git("commit", "-q", "-m", "base")

	seen := map[string]string{}
	step := func(name string, wantChange bool) {
		t.Helper()
		id, err := treeIdentity(t.Context(), dir)
		if err != nil {
			t.Fatal(err)
		}
		for prev, prevID := range seen {
			if prev != "last" && prevID == id && wantChange {
				t.Errorf("%s: identity %s is the same as after %s", name, id, prev)
			}
		}
		if !wantChange && len(seen) > 0 && seen["last"] != id {
			t.Errorf("%s: identity changed although nothing did", name)
		}
		seen[name] = id
		seen["last"] = id
	}
	step("commit", true)
	step("nothing", false)
	writeFile(t, filepath.Join(dir, "Makefile"), "all: x\n")
	step("tracked edit", true)
	writeFile(t, filepath.Join(dir, "drivers/new.c"), "int a;\n")
	step("untracked file", true)
	writeFile(t, filepath.Join(dir, "drivers/new.c"), "int b;\n")
	step("untracked edit", true)
	writeFile(t, filepath.Join(dir, "drivers/new.o"), "obj")
	step("ignored file", false)
	os.Remove(filepath.Join(dir, "drivers/new.c"))
	git("add", "-A")
	git("commit", "-q", "-m", "two")
	step("second commit", true)
}
