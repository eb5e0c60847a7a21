package kernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/vm/golden"
)

// forkC is kernel/fork.c of the patch tests' tree: numbered lines, so hunks can move.
func forkC(first int) string {
	var s strings.Builder
	for i := first; i < first+12; i++ {
		fmt.Fprintf(&s, "int f%d(void);\n", i)
	}
	return s.String()
}

// patchTree writes the patch tests' kernel tree: a Makefile with its version, kernel/fork.c
// and include/linux/sched.h.
func patchTree(t *testing.T) string {
	t.Helper()
	tree := t.TempDir()
	writeFile(t, filepath.Join(tree, "Makefile"), "# SPDX-License-Identifier: GPL-2.0\nVERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 8\nEXTRAVERSION =\n")
	writeFile(t, filepath.Join(tree, "kernel/fork.c"), forkC(1))
	writeFile(t, filepath.Join(tree, "include/linux/sched.h"), "struct task_struct;\n")
	return tree
}

// A format-patch mail changing f5 (lines 2..8 of fork.c: 3 lines of context each side).
const formatPatch = `From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001
From: Dev <dev@example.org>
Date: Tue, 1 Jul 2025 10:00:00 +0200
Subject: [PATCH] fork: make f5 take a flag

The flag says how.

Signed-off-by: Dev <dev@example.org>
---
 kernel/fork.c | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)

diff --git a/kernel/fork.c b/kernel/fork.c
index 1111111..2222222 100644
--- a/kernel/fork.c
+++ b/kernel/fork.c
@@ -2,7 +2,7 @@ int f1(void);
 int f2(void);
 int f3(void);
 int f4(void);
-int f5(void);
+int f5(int flag);
 int f6(void);
 int f7(void);
 int f8(void);
-- 
2.47.0

`

// A second mail of a series: a new file and a change to the header.
const secondPatch = `From 89abcdef0123456789abcdef0123456789abcdef Mon Sep 17 00:00:00 2001
From: Dev <dev@example.org>
Date: Tue, 1 Jul 2025 10:01:00 +0200
Subject: [PATCH 2/2] sched: add the flag
 and its header

---
diff --git a/include/linux/flag.h b/include/linux/flag.h
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/include/linux/flag.h
@@ -0,0 +1 @@
+#define FLAG 1
diff --git a/include/linux/sched.h b/include/linux/sched.h
index 4444444..5555555 100644
--- a/include/linux/sched.h
+++ b/include/linux/sched.h
@@ -1 +1,2 @@
 struct task_struct;
+#include <linux/flag.h>
-- 
2.47.0

`

// coverLetter is a series' mail 0: no diff, skipped.
const coverLetter = `From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
From: Dev <dev@example.org>
Date: Tue, 1 Jul 2025 09:59:00 +0200
Subject: [PATCH 0/2] flags

Two patches.

`

// plainDiff is diff -u between two trees (names carry a directory, as patch -p1 takes them).
const plainDiff = `--- linux.orig/kernel/fork.c	2025-07-01 10:00:00.000000000 +0200
+++ linux/kernel/fork.c	2025-07-01 10:05:00.000000000 +0200
@@ -9,4 +9,5 @@
 int f9(void);
 int f10(void);
 int f11(void);
 int f12(void);
+int f13(void);
`

func TestApplyPatches(t *testing.T) {
	cases := []struct {
		name    string
		patches []string // patch file contents, in order
		fork    string   // kernel/fork.c before, "" for forkC(1)
		want    map[string]string
		gone    []string
	}{
		{"format-patch", []string{formatPatch}, "",
			map[string]string{"kernel/fork.c": strings.Replace(forkC(1), "int f5(void)", "int f5(int flag)", 1)}, nil},
		{"hunk moved by three lines", []string{formatPatch}, "int a;\nint b;\nint c;\n" + forkC(1),
			map[string]string{"kernel/fork.c": "int a;\nint b;\nint c;\n" + strings.Replace(forkC(1), "int f5(void)", "int f5(int flag)", 1)}, nil},
		{"mbox series with a cover letter", []string{coverLetter + formatPatch + secondPatch}, "",
			map[string]string{
				"kernel/fork.c":         strings.Replace(forkC(1), "int f5(void)", "int f5(int flag)", 1),
				"include/linux/flag.h":  "#define FLAG 1\n",
				"include/linux/sched.h": "struct task_struct;\n#include <linux/flag.h>\n",
			}, nil},
		{"plain unified diff", []string{plainDiff}, "", map[string]string{"kernel/fork.c": forkC(1) + "int f13(void);\n"}, nil},
		{"two files in order", []string{formatPatch, plainDiff}, "",
			map[string]string{"kernel/fork.c": strings.Replace(forkC(1), "int f5(void)", "int f5(int flag)", 1) + "int f13(void);\n"}, nil},
		{"delete and rename", []string{"diff --git a/include/linux/sched.h b/include/linux/sched.h\ndeleted file mode 100644\n--- a/include/linux/sched.h\n+++ /dev/null\n@@ -1 +0,0 @@\n-struct task_struct;\n" +
			"diff --git a/kernel/fork.c b/kernel/spawn.c\nsimilarity index 100%\nrename from kernel/fork.c\nrename to kernel/spawn.c\n"}, "",
			map[string]string{"kernel/spawn.c": forkC(1)}, []string{"include/linux/sched.h", "kernel/fork.c"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tree := patchTree(t)
			if tc.fork != "" {
				writeFile(t, filepath.Join(tree, "kernel/fork.c"), tc.fork)
			}
			before := snapshot(t, tree)
			var pfs []patchFile
			for i, p := range tc.patches {
				pfs = append(pfs, patchFile{Name: fmt.Sprintf("%d.patch", i), Data: []byte(p)})
			}
			j, err := newJournal(tree)
			if err != nil {
				t.Fatal(err)
			}
			if err := applyPatches(j, pfs, "package:linux-source-6.12=6.12.8-1"); err != nil {
				t.Fatal(err)
			}
			for rel, want := range tc.want {
				if got, err := os.ReadFile(filepath.Join(tree, rel)); err != nil || string(got) != want {
					t.Errorf("%s = %q, %v; want %q", rel, got, err, want)
				}
			}
			for _, rel := range tc.gone {
				if exists(filepath.Join(tree, rel)) {
					t.Errorf("%s is still there", rel)
				}
			}
			if err := restorePatched(tree); err != nil {
				t.Fatal(err)
			}
			if after := snapshot(t, tree); after != before {
				t.Errorf("the restored tree differs:\n%s\nwant:\n%s", after, before)
			}
		})
	}
}

// snapshot lists a tree's files and contents, without kmodvm's bookkeeping.
func snapshot(t *testing.T, tree string) string {
	t.Helper()
	var s strings.Builder
	err := filepath.Walk(tree, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || strings.HasPrefix(filepath.Base(p), ".kmodvm-") {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(tree, p)
		fmt.Fprintf(&s, "%s %v\n%s", rel, fi.Mode(), data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s.String()
}

// A patch that does not apply stops with one paragraph naming the patch of its series, the
// hunk, the file and line, and what differs (golden); the tree is as it was.
func TestApplyPatchesFailure(t *testing.T) {
	cases := []struct {
		name    string
		patches string
		edit    func(tree string) // makes the tree one the patch was not made for
	}{
		{"context changed", formatPatch, func(tree string) {
			writeFile(t, filepath.Join(tree, "kernel/fork.c"), strings.Replace(forkC(1), "int f6(void)", "long f6(void)", 1))
		}},
		{"second of a series", coverLetter + formatPatch + secondPatch, func(tree string) {
			writeFile(t, filepath.Join(tree, "include/linux/sched.h"), "struct task;\n")
		}},
		{"file too short", plainDiff, func(tree string) {
			writeFile(t, filepath.Join(tree, "kernel/fork.c"), "int f9(void);\n")
		}},
		{"missing file", formatPatch, func(tree string) { os.Remove(filepath.Join(tree, "kernel/fork.c")) }},
		{"new file exists", secondPatch, func(tree string) { writeFile(t, filepath.Join(tree, "include/linux/flag.h"), "") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tree := patchTree(t)
			tc.edit(tree)
			before := snapshot(t, tree)
			j, err := newJournal(tree)
			if err != nil {
				t.Fatal(err)
			}
			err = applyPatches(j, []patchFile{{Name: "/home/dev/mod/fix.patch", Data: []byte(tc.patches)}}, "package:linux-source-6.12=6.12.8-1")
			var pe *PatchError
			var ce *ConfigError
			if !errors.As(err, &pe) || !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a PatchError that is a ConfigError", err)
			}
			golden.Check(t, filepath.Join("testdata", "golden", "patch-"+strings.ReplaceAll(tc.name, " ", "-")+".txt"), []byte(err.Error()+"\n"))
			if err := restorePatched(tree); err != nil {
				t.Fatal(err)
			}
			if after := snapshot(t, tree); after != before {
				t.Errorf("the restored tree differs:\n%s\nwant:\n%s", after, before)
			}
		})
	}
}

// Patch files that are no patches, or that reach out of the tree, are refused before any
// change.
func TestParsePatchesRefusals(t *testing.T) {
	for name, data := range map[string]string{
		"no diff":     "Just some notes.\n",
		"escapes":     "--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-root\n+toor\n",
		"git escapes": "diff --git a/../x b/../x\n--- a/../x\n+++ b/../x\n@@ -1 +1 @@\n-root\n+toor\n",
		"bad hunk":    "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n-a\n",
		"orphan hunk": "@@ -1 +1 @@\n-a\n+b\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parsePatches(patchFile{Name: "p.patch", Data: []byte(data)})
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), "p.patch") || !strings.Contains(err.Error(), "hint: ") {
				t.Errorf("err = %v, want a config error naming the file, with a hint", err)
			}
		})
	}
}

// After a restore, the restored files get a fresh mtime once the tree is filled again: a
// mirror of a local tree puts back the source's older mtime, and make would keep the
// objects built from the patched content.
func TestTouchRestored(t *testing.T) {
	tree := patchTree(t)
	old := time.Now().Add(-time.Hour)
	fork := filepath.Join(tree, "kernel/fork.c")
	j, err := newJournal(tree)
	if err != nil {
		t.Fatal(err)
	}
	if err := applyPatches(j, []patchFile{{Name: "p", Data: []byte(formatPatch)}}, "src"); err != nil {
		t.Fatal(err)
	}
	if err := restorePatched(tree); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(fork, old, old); err != nil { // what a mirror does
		t.Fatal(err)
	}
	if err := touchRestored(tree); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(fork); err != nil || !fi.ModTime().After(old.Add(time.Minute)) {
		t.Errorf("kernel/fork.c kept its old mtime: %v", err)
	}
	if exists(filepath.Join(tree, touchedList)) || exists(filepath.Join(tree, journalDir)) {
		t.Error("the bookkeeping stayed")
	}
}
