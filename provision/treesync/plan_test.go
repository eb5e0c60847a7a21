package treesync

import (
	"io/fs"
	"path"
	"reflect"
	"strings"
	"testing"
)

const (
	t0 = int64(1_700_000_000_123_456_789) // a local mtime with nanoseconds
	t1 = int64(1_700_000_100_000_000_000)
)

func dir(p string) Entry { return Entry{Path: p, Kind: Dir, Mode: 0o755} }
func file(p string, size int64, mtime int64) Entry {
	return Entry{Path: p, Kind: File, Size: size, Mtime: mtime, Mode: 0o644}
}

// remoteOf is what a remote listing shows for a file sent with mtime ns.
func remoteOf(e Entry) Entry {
	e.Mtime = sec(e.Mtime) * 1e9
	return e
}

func withHash(e Entry, h string) Entry      { e.SHA256 = h; return e }
func withMode(e Entry, m fs.FileMode) Entry { e.Mode = m; return e }
func ignored(e Entry) Entry                 { e.Ignored = true; return e }

func manifestOf(entries ...Entry) Manifest {
	m := Manifest{Version: manifestVersion, Files: map[string]ManifestEntry{}}
	for _, e := range entries {
		m.Files[e.Path] = ManifestEntry{Size: e.Size, Mtime: e.Mtime, Mode: uint32(e.Mode), SHA256: "h-" + e.Path}
	}
	return m
}

func TestPlan(t *testing.T) {
	a := file("a.c", 10, t0)
	sub := dir("sub")
	b := file("sub/b.c", 20, t0)
	tests := []struct {
		name     string
		local    []Entry
		remote   []Entry
		manifest Manifest
		want     Actions // Manifest field not compared
	}{
		{
			name:  "initial sync",
			local: []Entry{a, sub, b},
			want: Actions{
				Mkdir:   []Entry{sub},
				Upload:  []Entry{a, b},
				Changed: []string{"a.c", "sub/b.c"},
			},
		},
		{
			name:     "fast path: nothing changed",
			local:    []Entry{a, sub, b},
			remote:   []Entry{remoteOf(a), sub, remoteOf(b)},
			manifest: manifestOf(a, b),
			want:     Actions{Unchanged: 2},
		},
		{
			name:     "size changed: sent without hashing",
			local:    []Entry{file("a.c", 11, t1)},
			remote:   []Entry{remoteOf(a)},
			manifest: manifestOf(a),
			want:     Actions{Upload: []Entry{file("a.c", 11, t1)}, Changed: []string{"a.c"}},
		},
		{
			name:     "same size, new mtime: local hash wanted",
			local:    []Entry{file("a.c", 10, t1)},
			remote:   []Entry{remoteOf(a)},
			manifest: manifestOf(a),
			want:     Actions{Verify: []string{"a.c"}},
		},
		{
			name:     "same size, new mtime, new content: the manifest vouches for the remote hash",
			local:    []Entry{withHash(file("a.c", 10, t1), "new")},
			remote:   []Entry{remoteOf(a)},
			manifest: manifestOf(a),
			want:     Actions{Upload: []Entry{withHash(file("a.c", 10, t1), "new")}, Changed: []string{"a.c"}},
		},
		{
			name:     "touched only: mtime fixed, nothing sent",
			local:    []Entry{withHash(file("a.c", 10, t1), "h-a.c")},
			remote:   []Entry{remoteOf(a)},
			manifest: manifestOf(a),
			want:     Actions{SetAttrs: []SetAttr{{Path: "a.c", SetMtime: true, Mtime: t1}}, Unchanged: 1},
		},
		{
			name:     "no manifest: remote hash wanted after the local one",
			local:    []Entry{withHash(a, "x")},
			remote:   []Entry{remoteOf(a)},
			want:     Actions{Verify: []string{"a.c"}},
			manifest: Manifest{},
		},
		{
			name:   "no manifest, equal hashes: kept",
			local:  []Entry{withHash(a, "x")},
			remote: []Entry{withHash(remoteOf(a), "x")},
			want:   Actions{Unchanged: 1},
		},
		{
			name:     "remote modified behind our back: hashed, not trusted",
			local:    []Entry{withHash(a, "h-a.c")},
			remote:   []Entry{remoteOf(file("a.c", 10, t1))},
			manifest: manifestOf(a),
			want:     Actions{Verify: []string{"a.c"}},
		},
		{
			name:     "mode change only",
			local:    []Entry{withMode(a, 0o755)},
			remote:   []Entry{remoteOf(a)},
			manifest: manifestOf(a),
			want:     Actions{SetAttrs: []SetAttr{{Path: "a.c", SetMode: true, Mode: 0o755}}, Changed: []string{"a.c"}},
		},
		{
			name:     "deleted file and emptied directory",
			local:    []Entry{a},
			remote:   []Entry{remoteOf(a), sub, remoteOf(b)},
			manifest: manifestOf(a, b),
			want: Actions{
				Remove:    []Removal{{Path: "sub/b.c", Kind: File}, {Path: "sub", Kind: Dir}},
				Deleted:   []string{"sub/b.c"},
				Unchanged: 1,
			},
		},
		{
			name:   "directory kept while it holds ignored build outputs",
			remote: []Entry{sub, remoteOf(b), ignored(file("sub/b.o", 5, t0)), dir("sub/x"), ignored(dir("sub/x/target"))},
			want: Actions{
				Remove:  []Removal{{Path: "sub/b.c", Kind: File}},
				Deleted: []string{"sub/b.c"},
			},
		},
		{
			name:   "leftover temporaries removed",
			local:  []Entry{a},
			remote: []Entry{remoteOf(a), file(".a.c.kmodvm-tmp-0123abcd", 3, t0), dir(".d.kmodvm-tmp-ffffffff"), file(".d.kmodvm-tmp-ffffffff/z", 1, t0)},
			want: Actions{
				Remove: []Removal{
					{Path: ".a.c.kmodvm-tmp-0123abcd", Kind: File},
					{Path: ".d.kmodvm-tmp-ffffffff", Kind: Dir, Recursive: true},
				},
				Verify: []string{"a.c"},
			},
		},
		{
			name:   "file became a directory",
			local:  []Entry{sub, b},
			remote: []Entry{file("sub", 3, t0)},
			want: Actions{
				Remove:  []Removal{{Path: "sub", Kind: File}},
				Mkdir:   []Entry{sub},
				Upload:  []Entry{b},
				Changed: []string{"sub/b.c"},
			},
		},
		{
			name:   "directory became a file, ignored content and all",
			local:  []Entry{file("sub", 3, t0)},
			remote: []Entry{sub, remoteOf(b), ignored(file("sub/b.o", 5, t0))},
			want: Actions{
				Remove:  []Removal{{Path: "sub", Kind: Dir, Recursive: true}},
				Upload:  []Entry{file("sub", 3, t0)},
				Changed: []string{"sub"},
			},
		},
		{
			name:   "remote symlink where a directory belongs is replaced, not followed",
			local:  []Entry{sub, b},
			remote: []Entry{{Path: "sub", Kind: Symlink, Link: "/etc"}},
			want: Actions{
				Remove:  []Removal{{Path: "sub", Kind: Symlink}},
				Mkdir:   []Entry{sub},
				Upload:  []Entry{b},
				Changed: []string{"sub/b.c"},
			},
		},
		{
			name:   "symlinks: same target kept, new target re-pointed",
			local:  []Entry{{Path: "l1", Kind: Symlink, Link: "a.c"}, {Path: "l2", Kind: Symlink, Link: "b.c"}},
			remote: []Entry{{Path: "l1", Kind: Symlink, Link: "a.c"}, {Path: "l2", Kind: Symlink, Link: "a.c"}},
			want: Actions{
				Link:      []Entry{{Path: "l2", Kind: Symlink, Link: "b.c"}},
				Changed:   []string{"l2"},
				Unchanged: 1,
			},
		},
		{
			name:   "ignored remote entries are left alone, the manifest is not listed",
			remote: []Entry{ignored(file("a.o", 1, t0)), ignored(dir("target")), file(ManifestName, 2, t0)},
			want:   Actions{},
		},
		{
			name:   "directory mode",
			local:  []Entry{withMode(sub, 0o700)},
			remote: []Entry{sub},
			want:   Actions{SetAttrs: []SetAttr{{Path: "sub", SetMode: true, Mode: 0o700}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Plan(tt.local, tt.remote, tt.manifest)
			if err != nil {
				t.Fatal(err)
			}
			got.Manifest = Manifest{}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Plan:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestPlanManifest(t *testing.T) {
	a := file("a.c", 10, t0)
	b := withHash(file("b.c", 5, t1), "hb")
	got, err := Plan([]Entry{a, b}, []Entry{remoteOf(a)}, manifestOf(a))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]ManifestEntry{
		"a.c": {Size: 10, Mtime: t0, Mode: 0o644, SHA256: "h-a.c"}, // carried over
		"b.c": {Size: 5, Mtime: t1, Mode: 0o644, SHA256: "hb"},     // to be sent
	}
	if !reflect.DeepEqual(got.Manifest.Files, want) {
		t.Errorf("manifest = %+v, want %+v", got.Manifest.Files, want)
	}
}

func TestPlanRejects(t *testing.T) {
	tests := []struct {
		name          string
		local, remote []Entry
		want          string
	}{
		{"dotdot", []Entry{file("../x", 1, t0)}, nil, "leaves the tree"},
		{"dotdot inside", []Entry{dir("a"), file("a/../../x", 1, t0)}, nil, "not clean"},
		{"absolute", nil, []Entry{file("/etc/passwd", 1, t0)}, "absolute"},
		{"NUL", []Entry{file("a\x00b", 1, t0)}, nil, "NUL"},
		{"empty", []Entry{file("", 1, t0)}, nil, "empty"},
		{"dot", []Entry{file(".", 1, t0)}, nil, "empty"},
		{"duplicate", []Entry{file("a", 1, t0), file("a", 1, t0)}, nil, "twice"},
		{"orphan", []Entry{file("a/b", 1, t0)}, nil, "no parent"},
		{"parent is a file", []Entry{file("a", 1, t0), file("a/b", 1, t0)}, nil, "no parent"},
		{"reserved manifest", []Entry{file(ManifestName, 1, t0)}, nil, "reserved"},
		{"reserved temp", []Entry{file(".x.kmodvm-tmp-00000000", 1, t0)}, nil, "reserved"},
		{"special file", []Entry{{Path: "fifo", Kind: Other}}, nil, "special file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Plan(tt.local, tt.remote, Manifest{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Plan error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestRemotePath(t *testing.T) {
	tests := []struct {
		target, rel string
		want        string // "" = error
	}{
		{"/root/mod", "a.c", "/root/mod/a.c"},
		{"/root/mod", "src/a b;$(x).c", "/root/mod/src/a b;$(x).c"},
		{"/root/mod", "a\nb", "/root/mod/a\nb"},
		{"mod", "a.c", "mod/a.c"},
		{"/root/mod", "..", ""},
		{"/root/mod", "../mod2/a", ""},
		{"/root/mod", "a/../../b", ""},
		{"/root/mod", "a/..", ""},
		{"/root/mod", "/etc/passwd", ""},
		{"/root/mod", "", ""},
		{"/root/mod", ".", ""},
		{"/root/mod", "a//b", ""},
		{"/root/mod", "a/", ""},
		{"/root/mod", "a\x00b", ""},
		{"/", "etc", ""},
		{"", "a", ""},
		{".", "a", ""},
		{"/root/../etc", "a", ""},
		{"/root/mod/", "a", ""},
	}
	for _, tt := range tests {
		got, err := RemotePath(tt.target, tt.rel)
		if tt.want == "" {
			if err == nil {
				t.Errorf("RemotePath(%q, %q) = %q, want an error", tt.target, tt.rel, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("RemotePath(%q, %q) = %q, %v; want %q", tt.target, tt.rel, got, err, tt.want)
		}
	}
}

// FuzzPlanPaths feeds Plan arbitrary paths on both sides and checks that
// every path of the resulting plan, joined to the target, stays inside it.
func FuzzPlanPaths(f *testing.F) {
	f.Add("a.c", "sub", "../x", "/etc/passwd", uint8(0))
	f.Add("a/../../b", "..", "a\x00b", ".x.kmodvm-tmp-01234567", uint8(3))
	f.Add("x", "x/y", "x/y/z", "x", uint8(7))
	f.Add("./a", "a/./b", "a//b", "a/", uint8(5))
	const target = "/root/kmodvm/mod"
	f.Fuzz(func(t *testing.T, p1, p2, p3, p4 string, kinds uint8) {
		paths := []string{p1, p2, p3, p4}
		var local, remote []Entry
		for i, p := range paths {
			// Give every path its parent directories, so Plan gets past
			// validation as often as possible.
			side := &local
			if kinds&(1<<i) != 0 {
				side = &remote
			}
			var parents []string
			for d := path.Dir(p); d != "." && d != "/" && d != "" && len(parents) < 8; d = path.Dir(d) {
				parents = append([]string{d}, parents...)
			}
			for _, d := range parents {
				*side = append(*side, dir(d))
			}
			kind := Kind(1 + (int(kinds>>4)+i)%3)
			*side = append(*side, Entry{Path: p, Kind: kind, Size: int64(i), Mode: 0o644, Link: "x"})
		}
		a, err := Plan(local, remote, Manifest{})
		if err != nil {
			return
		}
		var out []string
		for _, r := range a.Remove {
			out = append(out, r.Path)
		}
		for _, es := range [][]Entry{a.Mkdir, a.Upload, a.Link} {
			for _, e := range es {
				out = append(out, e.Path)
			}
		}
		for _, s := range a.SetAttrs {
			out = append(out, s.Path)
		}
		out = append(out, a.Verify...)
		for p := range a.Manifest.Files {
			out = append(out, p)
		}
		for _, p := range out {
			full, err := RemotePath(target, p)
			if err != nil {
				t.Fatalf("Plan returned path %q that RemotePath rejects: %v", p, err)
			}
			// Independent check of the result.
			clean := path.Clean(full)
			if clean != full || !strings.HasPrefix(clean, target+"/") || strings.Contains(full, "\x00") {
				t.Fatalf("path %q -> %q escapes %q", p, full, target)
			}
			for _, el := range strings.Split(strings.TrimPrefix(full, target+"/"), "/") {
				if el == ".." || el == "." || el == "" {
					t.Fatalf("path %q -> %q has element %q", p, full, el)
				}
			}
		}
	})
}
