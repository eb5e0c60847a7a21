package treesync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

// newClient serves the real file system over an in-process SFTP server on
// a net.Pipe. wrap, if set, wraps the client's end of the pipe.
func newClient(t testing.TB, wrap func(net.Conn) net.Conn) *sftp.Client {
	t.Helper()
	c, stop := newServedClient(t, wrap)
	t.Cleanup(stop)
	return c
}

// newServedClient is newClient whose stop closes the connection and waits until the server
// has finished every request it had received (after a cut, it may still be working).
func newServedClient(t testing.TB, wrap func(net.Conn) net.Conn) (*sftp.Client, func()) {
	t.Helper()
	cc, sc := net.Pipe()
	srv, err := sftp.NewServer(sc)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve()
	}()
	var conn net.Conn = cc
	if wrap != nil {
		conn = wrap(cc)
	}
	c, err := sftp.NewClientPipe(conn, conn, sftp.UseConcurrentWrites(true))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	return c, func() {
		once.Do(func() {
			c.Close()
			sc.Close()
			<-done
		})
	}
}

// tree describes files to create: path -> content. A path ending in "/"
// is a directory, "-> target" content makes a symlink.
type tree map[string]string

var base = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func writeTree(t testing.TB, root string, tr tree) {
	t.Helper()
	paths := make([]string, 0, len(tr))
	for p := range tr {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for i, p := range paths {
		full := filepath.Join(root, filepath.FromSlash(p))
		content := tr[p]
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(p, "/"):
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(content, "-> "):
			if err := os.Symlink(strings.TrimPrefix(content, "-> "), full); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			// Distinct, known mtimes: no test depends on the clock.
			mt := base.Add(time.Duration(i) * time.Second)
			if err := os.Chtimes(full, mt, mt); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// snapshot describes every entry under root (kind, mode, mtime in seconds,
// content or link target), minus the paths in skip.
func snapshot(t testing.TB, root string, skip ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		for _, s := range skip {
			if rel == s {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch info.Mode().Type() {
		case fs.ModeDir:
			out[rel] = fmt.Sprintf("dir %v", info.Mode().Perm())
		case fs.ModeSymlink:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "symlink -> " + l
		case 0:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file %v mtime=%d %q", info.Mode().Perm(), info.ModTime().Unix(), b)
		default:
			out[rel] = "special " + info.Mode().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// inodes maps each remote file and symlink to its inode: a file the sync rewrites gets
// a new one (temp + rename), a file it leaves alone keeps its own.
func inodes(t testing.TB, root string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = info.Sys().(*syscall.Stat_t).Ino
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// assertMirrors checks the remote holds exactly the local tree (minus
// localSkip), and no temporary files.
func assertMirrors(t *testing.T, local, remote string, localSkip ...string) {
	t.Helper()
	want := snapshot(t, local, localSkip...)
	got := snapshot(t, remote, ManifestName)
	if !reflect.DeepEqual(got, want) {
		for p, w := range want {
			if got[p] != w {
				t.Errorf("remote %q = %q, want %q", p, got[p], w)
			}
		}
		for p, g := range got {
			if _, ok := want[p]; !ok {
				t.Errorf("remote has extra %q = %q", p, g)
			}
		}
	}
	assertNoTemps(t, remote)
}

func assertNoTemps(t *testing.T, remote string) {
	t.Helper()
	for p := range snapshot(t, remote) {
		if strings.Contains(p, tempMarker) {
			t.Errorf("temporary file left behind: %s", p)
		}
	}
}

func newTrees(t *testing.T) (local, remote string) {
	dir := t.TempDir()
	local, remote = filepath.Join(dir, "local"), filepath.Join(dir, "remote", "mod")
	if err := os.Mkdir(local, 0o755); err != nil {
		t.Fatal(err)
	}
	return local, remote
}

var sample = tree{
	"Makefile":             "obj-m := hello.o\n",
	"Kbuild":               "obj-m += hello.o\n",
	"hello.rs":             "// SPDX-License-Identifier: GPL-2.0\nuse kernel::prelude::*;\n",
	"src/a.c":              "int a;\n",
	"src/b.h":              "#define B 1\n",
	"src/deep/er/x.txt":    "deep\n",
	"empty/":               "",
	"inc.h":                "-> src/b.h",
	"srcdir":               "-> src",
	"src/deep/up.h":        "-> ../b.h",
	"scripts/gen.sh":       "#!/bin/sh\necho hi\n",
	"big.bin":              strings.Repeat("0123456789abcdef", 20000), // 320 KB: several concurrent writes
	".kmodvmignore":        "# nothing yet\n",
	"src/deep/er/also.txt": "more\n",
}

func TestSyncInitialThenNoop(t *testing.T) {
	local, remote := newTrees(t)
	writeTree(t, local, sample)
	if err := os.Chmod(filepath.Join(local, "scripts/gen.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, nil)
	ctx := context.Background()

	sum, err := Sync(ctx, c, local, remote, Options{})
	if err != nil {
		t.Fatal(err)
	}
	assertMirrors(t, local, remote)
	// 10 files + 3 symlinks.
	if sum.Changed != 13 || sum.Deleted != 0 || sum.Unchanged != 0 {
		t.Errorf("first sync: %+v, want 13 changed", sum)
	}
	if want := int64(len(strings.Join(mapValuesOfFiles(sample), ""))); sum.Bytes != want {
		t.Errorf("first sync sent %d bytes, want %d", sum.Bytes, want)
	}
	if _, err := os.Stat(filepath.Join(remote, ManifestName)); err != nil {
		t.Errorf("no manifest after a successful sync: %v", err)
	}

	before := inodes(t, remote)
	sum, err = Sync(ctx, c, local, remote, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Changed != 0 || sum.Deleted != 0 || sum.Unchanged != 13 || sum.Bytes != 0 || len(sum.ChangedPaths) != 0 {
		t.Errorf("second sync: %+v, want nothing changed", sum)
	}
	after := inodes(t, remote)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("a no-op sync rewrote files or the manifest: inodes %v -> %v", before, after)
	}
	assertMirrors(t, local, remote)
}

func mapValuesOfFiles(tr tree) []string {
	var out []string
	for p, c := range tr {
		if !strings.HasSuffix(p, "/") && !strings.HasPrefix(c, "-> ") {
			out = append(out, c)
		}
	}
	return out
}

func TestSyncChanges(t *testing.T) {
	write := func(p, content string, mtime time.Time) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			full := filepath.Join(dir, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(full, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
	later := base.Add(time.Hour)
	tests := []struct {
		name        string
		change      func(t *testing.T, dir string)
		wantChanged []string
		wantDeleted int
		wantBytes   int64
		rewritten   []string // remote files that get a new inode; all others keep theirs
		gone        []string // remote files that disappear
	}{
		{
			name:        "modify one file, new size",
			change:      write("src/a.c", "int a = 42;\n", later),
			wantChanged: []string{"src/a.c"},
			wantBytes:   12,
			rewritten:   []string{"src/a.c"},
		},
		{
			name:        "modify one file, same size",
			change:      write("src/a.c", "int b;\n", later),
			wantChanged: []string{"src/a.c"},
			wantBytes:   7,
			rewritten:   []string{"src/a.c"},
		},
		{
			name: "modify one file, same size, same second",
			change: func(t *testing.T, dir string) {
				fi, err := os.Stat(filepath.Join(dir, "src/a.c"))
				if err != nil {
					t.Fatal(err)
				}
				write("src/a.c", "int c;\n", fi.ModTime().Add(time.Millisecond))(t, dir)
			},
			wantChanged: []string{"src/a.c"},
			wantBytes:   7,
			rewritten:   []string{"src/a.c"},
		},
		{
			name:   "touch only: mtime follows, nothing sent",
			change: write("src/a.c", "int a;\n", later),
		},
		{
			name: "mode 0644 -> 0755",
			change: func(t *testing.T, dir string) {
				if err := os.Chmod(filepath.Join(dir, "src/a.c"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			wantChanged: []string{"src/a.c"},
		},
		{
			name: "delete a file",
			change: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "src/b.h")); err != nil {
					t.Fatal(err)
				}
			},
			wantDeleted: 1,
			gone:        []string{"src/b.h"},
		},
		{
			name: "delete a directory",
			change: func(t *testing.T, dir string) {
				if err := os.RemoveAll(filepath.Join(dir, "src/deep")); err != nil {
					t.Fatal(err)
				}
			},
			wantDeleted: 3, // two files and a symlink
			gone:        []string{"src/deep/er/x.txt", "src/deep/er/also.txt", "src/deep/up.h"},
		},
		{
			name: "rename a file",
			change: func(t *testing.T, dir string) {
				if err := os.Rename(filepath.Join(dir, "hello.rs"), filepath.Join(dir, "hello_mod.rs")); err != nil {
					t.Fatal(err)
				}
			},
			wantChanged: []string{"hello_mod.rs"},
			wantDeleted: 1,
			wantBytes:   int64(len(sample["hello.rs"])),
			rewritten:   []string{"hello_mod.rs"},
			gone:        []string{"hello.rs"},
		},
		{
			name: "file becomes a directory",
			change: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "Kbuild")); err != nil {
					t.Fatal(err)
				}
				write("Kbuild/inner", "x", later)(t, dir)
			},
			wantChanged: []string{"Kbuild/inner"},
			wantBytes:   1,
			rewritten:   []string{"Kbuild/inner"},
			gone:        []string{"Kbuild"},
		},
		{
			name: "directory becomes a file",
			change: func(t *testing.T, dir string) {
				if err := os.RemoveAll(filepath.Join(dir, "src/deep")); err != nil {
					t.Fatal(err)
				}
				write("src/deep", "flat", later)(t, dir)
			},
			wantChanged: []string{"src/deep"},
			wantBytes:   4,
			rewritten:   []string{"src/deep"},
			gone:        []string{"src/deep/er/x.txt", "src/deep/er/also.txt", "src/deep/up.h"},
		},
		{
			name: "symlink re-pointed",
			change: func(t *testing.T, dir string) {
				p := filepath.Join(dir, "inc.h")
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("src/a.c", p); err != nil {
					t.Fatal(err)
				}
			},
			wantChanged: []string{"inc.h"},
			rewritten:   []string{"inc.h"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local, remote := newTrees(t)
			writeTree(t, local, sample)
			c := newClient(t, nil)
			ctx := context.Background()
			if _, err := Sync(ctx, c, local, remote, Options{}); err != nil {
				t.Fatal(err)
			}
			before := inodes(t, remote)

			tt.change(t, local)
			sum, err := Sync(ctx, c, local, remote, Options{})
			if err != nil {
				t.Fatal(err)
			}
			assertMirrors(t, local, remote)
			if !reflect.DeepEqual(sum.ChangedPaths, tt.wantChanged) || sum.Changed != len(tt.wantChanged) {
				t.Errorf("changed = %d %q, want %q", sum.Changed, sum.ChangedPaths, tt.wantChanged)
			}
			if sum.Deleted != tt.wantDeleted {
				t.Errorf("deleted = %d, want %d", sum.Deleted, tt.wantDeleted)
			}
			if sum.Bytes != tt.wantBytes {
				t.Errorf("bytes = %d, want %d", sum.Bytes, tt.wantBytes)
			}

			// Only the files named were rewritten; the rest kept their inode.
			after := inodes(t, remote)
			delete(before, ManifestName)
			delete(after, ManifestName)
			for _, p := range tt.gone {
				if _, ok := after[p]; ok {
					t.Errorf("%s still exists remotely", p)
				}
				delete(before, p)
			}
			for _, p := range tt.rewritten {
				if after[p] == 0 || after[p] == before[p] {
					t.Errorf("%s was not rewritten", p)
				}
				delete(before, p)
				delete(after, p)
			}
			for p, ino := range before {
				if after[p] != ino {
					t.Errorf("%s was rewritten but should not have been", p)
				}
			}
		})
	}
}

func TestSyncIgnore(t *testing.T) {
	local, remote := newTrees(t)
	writeTree(t, local, tree{
		"hello.c":           "int x;\n",
		"hello.o":           "local object",
		".hello.o.cmd":      "cmd",
		"hello.ko":          "ko",
		"Module.symvers":    "",
		"modules.order":     "",
		"keep.o":            "prebuilt blob",
		"target/debug/x":    "cargo",
		".git/HEAD":         "ref: x",
		"notes/todo":        "secret",
		"scratch.txt":       "scratch",
		"sub/scratch.txt":   "not anchored here",
		"debug.log":         "log",
		"extra.tmp":         "ignored by an option",
		".kmodvmignore":     "notes/\n/scratch.txt\n*.log\n!keep.o\n",
		"old/":              "",
		"old/.placeholder":  "",
		"sub/.sub.o.cmd":    "",
		"sub/sub.mod.c":     "",
		"sub/kept.rs":       "// rust\n",
		"sub/gone/":         "",
		"sub/gone/gone.txt": "",
	})
	// What the guest's build left remotely, and files the user keeps there.
	writeTree(t, remote, tree{
		"hello.o":            "remote object",
		"hello.ko":           "remote ko",
		".hello.o.cmd":       "remote cmd",
		"Module.symvers":     "remote symvers",
		"notes/remote-only":  "remote notes",
		"debug.log":          "remote log",
		"target/release/y":   "remote cargo",
		"stale.c":            "deleted locally",
		"olddir/olddir.c":    "source removed locally",
		"olddir/olddir.o":    "its object",
		"emptyold/a.c":       "whole dir removed locally",
		"extra.tmp":          "remote extra",
		"sub/gone/gone.txt":  "",
		"sub/gone/gone.mod":  "build output in a directory that is still local",
		"sub/stale/stale.rs": "",
	})
	remoteBefore := snapshot(t, remote)
	// The directory that will be removed locally is synced first.
	c := newClient(t, nil)
	ctx := context.Background()
	opt := Options{Ignore: []string{"*.tmp"}}

	if err := os.RemoveAll(filepath.Join(local, "sub/gone")); err != nil {
		t.Fatal(err)
	}
	sum, err := Sync(ctx, c, local, remote, opt)
	if err != nil {
		t.Fatal(err)
	}
	got := snapshot(t, remote, ManifestName)

	// Ignored remote entries are untouched.
	for _, p := range []string{"hello.o", "hello.ko", ".hello.o.cmd", "Module.symvers", "notes/remote-only",
		"debug.log", "target/release/y", "olddir/olddir.o", "extra.tmp", "sub/gone/gone.mod"} {
		if got[p] != remoteBefore[p] {
			t.Errorf("ignored remote %s changed: %q -> %q", p, remoteBefore[p], got[p])
		}
	}
	// Ignored local entries are not sent.
	for _, p := range []string{"target/debug/x", ".git/HEAD", "notes/todo", "scratch.txt", "modules.order",
		"sub/.sub.o.cmd", "sub/sub.mod.c"} {
		if _, ok := got[p]; ok {
			t.Errorf("ignored local %s was sent", p)
		}
	}
	// Not ignored: sent, or deleted remotely.
	for _, p := range []string{"hello.c", "keep.o", "sub/scratch.txt", "sub/kept.rs", ".kmodvmignore", "old/.placeholder"} {
		if !strings.HasPrefix(got[p], "file ") {
			t.Errorf("%s was not sent", p)
		}
	}
	for _, p := range []string{"stale.c", "olddir/olddir.c", "emptyold/a.c", "emptyold", "sub/gone/gone.txt", "sub/stale/stale.rs", "sub/stale"} {
		if _, ok := got[p]; ok {
			t.Errorf("stale %s was not deleted", p)
		}
	}
	// A directory gone locally stays while it holds ignored build outputs.
	if _, ok := got["olddir"]; !ok {
		t.Error("olddir, which holds an ignored build output, was removed")
	}
	if sum.Deleted != 5 {
		t.Errorf("deleted = %d (%+v), want 5", sum.Deleted, sum)
	}
	assertNoTemps(t, remote)
}

func TestSyncRefusesEscapingSymlinks(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, link, target string
		ignore             []string
		extra              tree // more entries in the local tree
		wantErr            string
	}{
		{name: "absolute", link: "src/foo", target: "/etc/passwd",
			wantErr: "sync: symlink src/foo -> /etc/passwd points outside the module directory; hint: copy the file into the module directory or add it to .kmodvmignore"},
		{name: "relative up", link: "src/foo", target: "../../x", wantErr: "symlink src/foo -> ../../x points outside"},
		{name: "parent of the root", link: "a", target: "..", wantErr: "symlink a -> .. points outside"},
		{name: "two levels up", link: "a", target: "../..", wantErr: "symlink a -> ../.. points outside"},
		{name: "shadow", link: "shadow", target: "/etc/shadow", wantErr: "symlink shadow -> /etc/shadow points outside"},
		{name: "absolute directory", link: "src/etc", target: "/etc", wantErr: "symlink src/etc -> /etc points outside"},
		{name: "down then out", link: "src/foo", target: "ok.c/../../../x", wantErr: "symlink src/foo -> ok.c/../../../x points outside"},
		{name: "dangling outside", link: "gone", target: "../no-such-dir/x", wantErr: "symlink gone -> ../no-such-dir/x points outside"},
		// Lexically inside, but through an ignored symlink that leads out.
		{name: "through an ignored symlink", link: "b", target: "ext/secret", ignore: []string{"/ext"}, wantErr: "symlink b -> ext/secret points outside"},
		// Lexically inside and dangling on the host, but out through the tree's own link
		// s -> . (the guest's copy has it too): s/s/s/../../.. is three levels up.
		{name: "out through a link to .", link: "l", target: "s/s/s/../../../usr/src/x", extra: tree{"s": "-> ."},
			wantErr: "symlink l -> s/s/s/../../../usr/src/x points outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local, remote := newTrees(t)
			writeTree(t, local, tree{"a.c": "x", "src/ok.c": "y", tt.link: "-> " + tt.target, "ext": "-> " + outside})
			writeTree(t, local, tt.extra)
			ignore := append([]string{"/ext"}, tt.ignore...)
			c := newClient(t, nil)
			_, err := Sync(context.Background(), c, local, remote, Options{Ignore: ignore})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Sync error = %v, want one containing %q", err, tt.wantErr)
			}
			var te *TreeError
			if !errors.As(err, &te) {
				t.Errorf("Sync error is %T, want *TreeError", err)
			}
			if _, err := os.Lstat(remote); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("remote target was created although the sync was refused (%v)", err)
			}

			// Ignoring the link, as the hint says, makes the sync work.
			_, err = Sync(context.Background(), c, local, remote, Options{Ignore: append(ignore, "/"+tt.link)})
			if err != nil {
				t.Fatalf("sync with the link ignored: %v", err)
			}
			assertMirrors(t, local, remote, tt.link, "ext")
		})
	}
}

// TestSyncRefusesDotDotIgnore: a ".." in .kmodvmignore is an error before anything is
// copied, not a pattern that silently matches nothing.
func TestSyncRefusesDotDotIgnore(t *testing.T) {
	local, remote := newTrees(t)
	writeTree(t, local, tree{"a.c": "x", ".kmodvmignore": "*.log\n!../../etc/shadow\n"})
	_, err := Sync(context.Background(), newClient(t, nil), local, remote, Options{})
	var te *TreeError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), ".kmodvmignore line 2") || !strings.Contains(err.Error(), `".." cannot be used`) {
		t.Fatalf("Sync error = %v, want a *TreeError naming line 2 and the \"..\"", err)
	}
	if _, err := os.Lstat(remote); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("remote target was created although the sync was refused (%v)", err)
	}
}

// TestSyncRemoteTargetSymlinkRefused: a symlink planted at the target itself (a directory
// elsewhere, or nowhere) is not written through.
func TestSyncRemoteTargetSymlinkRefused(t *testing.T) {
	for _, dangling := range []bool{false, true} {
		t.Run(fmt.Sprintf("dangling=%v", dangling), func(t *testing.T) {
			local, remote := newTrees(t)
			writeTree(t, local, tree{"a.c": "x", "sub/b.c": "y"})
			outside := t.TempDir()
			to := outside
			if dangling {
				to = filepath.Join(outside, "not-yet")
			}
			if err := os.MkdirAll(filepath.Dir(remote), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(to, remote); err != nil {
				t.Fatal(err)
			}
			_, err := Sync(context.Background(), newClient(t, nil), local, remote, Options{})
			if err == nil || !strings.Contains(err.Error(), "is a symlink") || !strings.Contains(err.Error(), "hint:") {
				t.Fatalf("Sync error = %v, want a refusal of the symlinked target with a hint", err)
			}
			if got := snapshot(t, outside); len(got) != 0 {
				t.Errorf("the sync wrote through the target symlink: %v", got)
			}
		})
	}
}

func TestSyncRemoteSymlinkIsNotFollowed(t *testing.T) {
	local, remote := newTrees(t)
	outside := t.TempDir()
	writeTree(t, local, tree{"sub/victim": "new content", "file": "x"})
	if err := os.MkdirAll(remote, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "victim"), []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Remotely, sub and file are symlinks leading out of the target.
	if err := os.Symlink(outside, filepath.Join(remote, "sub")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "victim"), filepath.Join(remote, "file")); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, nil)
	if _, err := Sync(context.Background(), c, local, remote, Options{}); err != nil {
		t.Fatal(err)
	}
	assertMirrors(t, local, remote)
	if b, err := os.ReadFile(filepath.Join(outside, "victim")); err != nil || string(b) != "precious" {
		t.Errorf("file outside the target was written: %q, %v", b, err)
	}
}

func TestSyncSpecialNames(t *testing.T) {
	names := []string{
		"with space.c",
		"quote'single.h",
		`quote"double.h`,
		"semi;colon.rs",
		"$(touch pwned).c",
		"`touch pwned2`.c",
		"new\nline.c",
		"tab\there.c",
		"-dash.c",
		"ünïcödé.rs",
		"dir with space/and;semi/$(x)",
		"...",
		"..dotdot-prefix.c",
		"dotdot..inside.h",
	}
	tr := tree{}
	for i, n := range names {
		tr[n] = fmt.Sprintf("content %d\n", i)
	}
	tr["link to $(x)"] = "-> dir with space/and;semi/$(x)"
	local, remote := newTrees(t)
	writeTree(t, local, tr)
	c := newClient(t, nil)
	ctx := context.Background()
	if _, err := Sync(ctx, c, local, remote, Options{}); err != nil {
		t.Fatal(err)
	}
	assertMirrors(t, local, remote)

	// And they can be deleted and renamed.
	if err := os.Remove(filepath.Join(local, "new\nline.c")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(local, "semi;colon.rs"), filepath.Join(local, "semi;colon 2.rs")); err != nil {
		t.Fatal(err)
	}
	sum, err := Sync(ctx, c, local, remote, Options{})
	if err != nil {
		t.Fatal(err)
	}
	assertMirrors(t, local, remote)
	if sum.Deleted != 2 || !reflect.DeepEqual(sum.ChangedPaths, []string{"semi;colon 2.rs"}) {
		t.Errorf("second sync: %+v", sum)
	}
	for _, p := range []string{"pwned", "pwned2"} {
		for _, d := range []string{local, remote, filepath.Dir(remote), "."} {
			if _, err := os.Stat(filepath.Join(d, p)); err == nil {
				t.Errorf("%s appeared in %s", p, d)
			}
		}
	}
}

func TestSyncSkipsSpecialFiles(t *testing.T) {
	local, remote := newTrees(t)
	writeTree(t, local, tree{"a.c": "x"})
	if err := syscall.Mkfifo(filepath.Join(local, "fifo"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	c := newClient(t, nil)
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	if _, err := Sync(context.Background(), c, local, remote, Options{Log: log}); err != nil {
		t.Fatal(err)
	}
	assertMirrors(t, local, remote, "fifo")
	if !strings.Contains(logBuf.String(), "level=WARN") || !strings.Contains(logBuf.String(), "path=fifo") {
		t.Errorf("no warning naming the skipped fifo in the log:\n%s", logBuf.String())
	}
}

func TestSummaryString(t *testing.T) {
	tests := []struct {
		s    Summary
		want string
	}{
		{Summary{Changed: 3, Deleted: 1, Duration: 234 * time.Millisecond}, "3 changed, 1 deleted, 0.2 s"},
		{Summary{Unchanged: 10, Duration: 12 * time.Second}, "0 changed, 0 deleted, 12.0 s"},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestSyncRemovesLeftoverTemps(t *testing.T) {
	local, remote := newTrees(t)
	writeTree(t, local, tree{"a.c": "x", "sub/b.c": "y"})
	writeTree(t, remote, tree{
		".a.c.kmodvm-tmp-0123abcd":              "partial",
		"sub/.b.c.kmodvm-tmp-deadbeef":          "partial",
		".kmodvm-sync.json.kmodvm-tmp-00000000": "{",
	})
	c := newClient(t, nil)
	if _, err := Sync(context.Background(), c, local, remote, Options{}); err != nil {
		t.Fatal(err)
	}
	assertMirrors(t, local, remote)
}

func TestSyncRejectsBadTargets(t *testing.T) {
	local, _ := newTrees(t)
	writeTree(t, local, tree{"a.c": "x"})
	c := newClient(t, nil)
	for _, target := range []string{"", ".", "/", "/root/../etc", "/root/mod/"} {
		if _, err := Sync(context.Background(), c, local, target, Options{}); err == nil {
			t.Errorf("Sync to %q succeeded, want an error", target)
		}
	}
}

// cutConn fails the connection (or cancels a context) once more than limit
// bytes have been written through it.
type cutConn struct {
	net.Conn
	mu      sync.Mutex
	written int
	limit   int
	cancel  context.CancelFunc // nil: close the connection instead
	tripped bool
}

func (c *cutConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.written += len(b)
	trip := c.written > c.limit && !c.tripped
	if trip {
		c.tripped = true
	}
	c.mu.Unlock()
	if trip {
		if c.cancel != nil {
			c.cancel()
		} else {
			c.Conn.Close()
			return 0, errors.New("connection cut by the test")
		}
	}
	return c.Conn.Write(b)
}

func TestSyncInterrupted(t *testing.T) {
	// Many files of the same size: the second sync has to compare content.
	initial := tree{}
	for i := range 40 {
		initial[fmt.Sprintf("f%02d.c", i)] = strings.Repeat(fmt.Sprintf("%02d", i), 20000)
	}
	for _, mode := range []string{"connection cut", "context cancelled"} {
		t.Run(mode, func(t *testing.T) {
			local, remote := newTrees(t)
			writeTree(t, local, initial)
			ctx := context.Background()
			if _, err := Sync(ctx, newClient(t, nil), local, remote, Options{}); err != nil {
				t.Fatal(err)
			}

			// Change every file (same sizes), delete one, add one.
			changed := tree{}
			for p, c := range initial {
				changed[p] = "x" + c[1:]
			}
			writeTree(t, local, changed)
			later := base.Add(time.Hour)
			for p := range changed {
				if err := os.Chtimes(filepath.Join(local, p), later, later); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Remove(filepath.Join(local, "f00.c")); err != nil {
				t.Fatal(err)
			}
			writeTree(t, local, tree{"new.c": strings.Repeat("n", 50000)})

			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			cut := &cutConn{limit: 500_000}
			if mode == "context cancelled" {
				cut.cancel = cancel
			}
			c, stop := newServedClient(t, func(conn net.Conn) net.Conn { cut.Conn = conn; return cut })
			t.Cleanup(stop)
			_, err := Sync(cctx, c, local, remote, Options{})
			if err == nil {
				t.Fatal("interrupted sync reported success")
			}
			stop() // the server may still be handling what it received before the cut
			if mode == "context cancelled" && !errors.Is(err, context.Canceled) {
				t.Errorf("error = %v, want context.Canceled", err)
			}
			// The interruption happened in the middle of the uploads: some
			// files are new, some old, none partial.
			got := snapshot(t, remote, ManifestName)
			var news, olds int
			for p, c := range changed {
				if _, ok := got[p]; !ok {
					continue
				}
				b, err := os.ReadFile(filepath.Join(remote, p))
				switch {
				case err != nil:
					t.Error(err)
				case string(b) == c:
					news++
				case string(b) == initial[p]:
					olds++
				default:
					t.Errorf("%s is partially written (%d bytes)", p, len(b))
				}
			}
			var temps int
			for p := range snapshot(t, remote) {
				if strings.Contains(p, tempMarker) {
					temps++
				}
			}
			t.Logf("after the interruption: %d new, %d old, %d temporaries", news, olds, temps)
			if news == 0 || olds == 0 {
				t.Errorf("interruption not in the middle: %d new, %d old files", news, olds)
			}

			sum, err := Sync(ctx, newClient(t, nil), local, remote, Options{})
			if err != nil {
				t.Fatal(err)
			}
			assertMirrors(t, local, remote)
			if sum.Changed+sum.Unchanged != len(changed) {
				t.Errorf("converging sync: %+v", sum)
			}
		})
	}
}
