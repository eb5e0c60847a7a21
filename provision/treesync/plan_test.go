package treesync

import (
	"fmt"
	"io/fs"
	"path"
	"reflect"
	"slices"
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

// TestPlanDeepTree plans a tree 2,000 directories deep (what fits in
// PATH_MAX), with build outputs at every level, where the top directory
// became a file locally. Walking up from every path made this cubic in the
// depth: 8 s per plan.
func TestPlanDeepTree(t *testing.T) {
	const depth = 2000
	var local, remote []Entry
	p := ""
	for range depth {
		p = path.Join(p, "d")
		remote = append(remote, dir(p), ignored(file(p+"/x.o", 1, t0)))
		if p != "d" {
			local = append(local, dir("e"+p[1:]))
		}
	}
	local = append(local, file("d", 1, t0), dir("e"), file("e"+p[1:]+"/f", 1, t0))
	a, err := Plan(local, remote, Manifest{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Removal{{Path: "d", Kind: Dir, Recursive: true}}
	if !reflect.DeepEqual(a.Remove, want) || len(a.Mkdir) != depth || len(a.Upload) != 2 {
		t.Errorf("remove %+v, %d mkdirs, %d uploads; want %+v, %d, 2", a.Remove, len(a.Mkdir), len(a.Upload), want, depth)
	}

	// The same tree again: nothing removed, every build output kept.
	a, err = Plan(filterDirs(remote), remote, Manifest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Remove) != 0 || len(a.Mkdir) != 0 {
		t.Errorf("unchanged deep tree: %d removals, %d mkdirs", len(a.Remove), len(a.Mkdir))
	}
}

// filterDirs returns the directories of entries.
func filterDirs(entries []Entry) []Entry {
	var out []Entry
	for _, e := range entries {
		if e.Kind == Dir {
			out = append(out, e)
		}
	}
	return out
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
		{"inside an ignored directory", []Entry{ignored(dir("a")), file("a/b", 1, t0)}, nil, "inside the ignored directory"},
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

// fuzzTarget is the remote directory the planner fuzz syncs into.
const fuzzTarget = "/root/kmodvm/mod"

// fuzzLinks are symlink targets, hostile ones among them.
var fuzzLinks = []string{"a.c", "../x", "/etc", "s/../..", ".", "sub/../../y", "", "x\x00y"}

// fuzzTrees builds a local tree, a remote tree and a manifest from the
// fuzzer's input: spec holds up to 16 paths separated by "|"; two bytes of
// ctrl per path say where the entry is and what it is:
//
//	ctrl[2i]:   bits 0-1 side (local, remote, both, both as another kind),
//	            bits 2-3 kind (file, dir, symlink, special), bit 4 ignored
//	            remotely, bit 5 no parent directories, bit 6 in the manifest,
//	            bit 7 ignored locally
//	ctrl[2i+1]: bits 0-1 local content, bits 2-3 remote content, bits 4-6
//	            symlink target, bit 7 another mode remotely
//
// Contents 0 and 1 have the same size, so only hashing tells them apart.
// The returned contents map a side and path ("l:a.c", "r:a.c") to content.
func fuzzTrees(spec string, ctrl []byte) (local, remote []Entry, m Manifest, contents map[string]int) {
	m = Manifest{Version: manifestVersion, Files: map[string]ManifestEntry{}}
	contents = map[string]int{}
	seen := map[string]bool{}
	add := func(side *[]Entry, tag string, e Entry, content int) {
		if !seen[tag+e.Path] {
			seen[tag+e.Path] = true
			*side = append(*side, e)
			contents[tag+e.Path] = content
		}
	}
	at := func(i int) byte {
		if i < len(ctrl) {
			return ctrl[i]
		}
		return 0
	}
	paths := strings.Split(spec, "|")
	for i, p := range paths[:min(len(paths), 16)] {
		b0, b1 := at(2*i), at(2*i+1)
		kind := Kind(1 + (b0>>2)&3)
		lc, rc := int(b1&3), int(b1>>2&3)
		entry := func(k Kind, c int) Entry {
			e := Entry{Path: p, Kind: k, Mode: 0o644}
			switch k {
			case File:
				e.Size, e.Mtime = int64(1+c/2), t0+int64(c%2)*1e9
			case Dir:
				e.Mode = 0o755
			case Symlink:
				e.Link = fuzzLinks[int(b1>>4&7)%len(fuzzLinks)]
			}
			return e
		}
		l := entry(kind, lc)
		l.Ignored = b0&0x80 != 0
		r := entry(kind, rc)
		if b0&3 == 3 {
			r = entry(Kind(1+(uint8(kind)%4)), rc)
		}
		if b1&0x80 != 0 {
			r.Mode = 0o600
		}
		r.Mtime = sec(r.Mtime) * 1e9 // what SFTP shows
		r.Ignored = b0&0x10 != 0
		type side struct {
			entries *[]Entry
			tag     string
			e       Entry
			content int
		}
		var sides []side
		if b0&3 != 1 {
			sides = append(sides, side{&local, "l:", l, lc})
		}
		if b0&3 != 0 {
			sides = append(sides, side{&remote, "r:", r, rc})
			if b0&0x40 != 0 && r.Kind == File && !seen["r:"+p] {
				m.Files[p] = ManifestEntry{Size: r.Size, Mtime: r.Mtime, Mode: uint32(r.Mode), SHA256: fmt.Sprint(rc)}
			}
		}
		for _, s := range sides {
			if b0&0x20 == 0 {
				var parents []string
				for d := path.Dir(p); d != "." && d != "/" && d != "" && len(parents) < 8; d = path.Dir(d) {
					parents = append([]string{d}, parents...)
				}
				for _, d := range parents {
					add(s.entries, s.tag, dir(d), 0)
				}
			}
			add(s.entries, s.tag, s.e, s.content)
		}
	}
	return local, remote, m, contents
}

// planFinal runs Plan until it wants no more hashes, as the sync does,
// hashing from contents.
func planFinal(local, remote []Entry, m Manifest, contents map[string]int) (Actions, error) {
	for range 3 {
		a, err := Plan(local, remote, m)
		if err != nil || len(a.Verify) == 0 {
			return a, err
		}
		for _, p := range a.Verify {
			for i := range local {
				if local[i].Path == p && local[i].SHA256 == "" {
					local[i].SHA256 = fmt.Sprint(contents["l:"+p])
					p = ""
				}
			}
			for i := range remote {
				if remote[i].Path == p {
					remote[i].SHA256 = fmt.Sprint(contents["r:"+p])
				}
			}
		}
	}
	return Actions{}, fmt.Errorf("plan still wants hashes after two rounds")
}

// FuzzPlanPaths feeds Plan arbitrary trees: paths of any bytes ("..",
// absolute, NUL, newline, our temporary names), on either side or both, as
// files, directories, symlinks and special files, ignored or not, with or
// without their parent directories, with contents that differ or not. It
// checks that Plan refuses any path that is not clean and relative; that
// every path a plan names, and every temporary name the sync derives from
// it, stays strictly inside the target; and, running the plan on a model of
// the remote tree, that no operation goes through a symlink or into a
// missing directory, that a directory is empty when removed without
// recursion, and that afterwards the remote holds exactly the local tree,
// with the local contents, plus the ignored entries the local tree does not
// claim.
func FuzzPlanPaths(f *testing.F) {
	f.Add("a.c|sub|sub/b.c|../x|/etc/passwd", []byte{0, 0, 6, 0, 2, 5, 0, 0, 1, 0})
	f.Add("a/../../b|..|a\x00b|.x.kmodvm-tmp-01234567|x\ny", []byte{0, 0, 1, 0, 0, 0, 1, 0, 0, 0})
	f.Add("x|x/y|x/y/z|l|target", []byte{3, 0, 2, 0x40, 0x41, 0x0d, 0x2a, 0x30, 0x15, 0})
	f.Add("./a|a/./b|a//b|a/|/", []byte{0x20, 0, 0x20, 0, 0x20, 0, 0x20, 0, 0x20, 0})
	f.Fuzz(func(t *testing.T, spec string, ctrl []byte) {
		local, remote, manifest, contents := fuzzTrees(spec, ctrl)
		a, err := planFinal(local, remote, manifest, contents)
		if err != nil {
			return
		}
		for _, e := range append(slices.Clone(local), remote...) {
			if err := CheckRel(e.Path); err != nil {
				t.Fatalf("Plan accepted the path %q: %v", e.Path, err)
			}
		}
		checkPlanPaths(t, a)
		checkPlanRuns(t, local, remote, a, contents)
	})
}

// checkPlanPaths checks that every path in a, and the temporary name the
// sync would write it through, is strictly inside the target.
func checkPlanPaths(t *testing.T, a Actions) {
	t.Helper()
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
	out = append(append(append(out, a.Verify...), a.Changed...), a.Deleted...)
	for p := range a.Manifest.Files {
		out = append(out, p)
	}
	for _, p := range out {
		full, err := RemotePath(fuzzTarget, p)
		if err != nil {
			t.Fatalf("Plan returned path %q that RemotePath rejects: %v", p, err)
		}
		tmp := tempPath(full)
		for _, q := range []string{full, tmp} {
			rest, ok := strings.CutPrefix(q, fuzzTarget+"/")
			if !ok || path.Clean(q) != q || strings.Contains(q, "\x00") {
				t.Fatalf("path %q -> %q escapes %q", p, q, fuzzTarget)
			}
			for _, el := range strings.Split(rest, "/") {
				if el == ".." || el == "." || el == "" {
					t.Fatalf("path %q -> %q has element %q", p, q, el)
				}
			}
		}
		if path.Dir(tmp) != path.Dir(full) || !isTempName(path.Base(tmp)) || len(path.Base(tmp)) > 255 {
			t.Fatalf("temporary %q for %q is not a temporary name (of at most 255 bytes) next to it", tmp, full)
		}
	}
}

// checkPlanRuns runs a on a model of the remote tree; see FuzzPlanPaths.
func checkPlanRuns(t *testing.T, local, remote []Entry, a Actions, contents map[string]int) {
	t.Helper()
	model := map[string]Kind{}
	content := map[string]int{}
	ignored := map[string]bool{}
	for _, r := range remote {
		model[r.Path] = r.Kind
		content[r.Path] = contents["r:"+r.Path]
		ignored[r.Path] = r.Ignored
	}
	// inDirs: every parent of p is a directory, not a symlink or a file, so
	// the operation lands where it says.
	inDirs := func(op, p string) {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if model[d] != Dir {
				t.Fatalf("%s %q: parent %q is a %v, not a directory", op, p, d, model[d])
			}
		}
	}
	below := func(p string) []string {
		var out []string
		for q := range model {
			if strings.HasPrefix(q, p+"/") {
				out = append(out, q)
			}
		}
		return out
	}
	for _, r := range a.Remove {
		inDirs("remove", r.Path)
		if k, ok := model[r.Path]; !ok || k != r.Kind {
			t.Fatalf("remove %q (%v): the remote has %v", r.Path, r.Kind, k)
		}
		if kids := below(r.Path); len(kids) > 0 && !r.Recursive {
			t.Fatalf("remove %q without recursion, but it holds %q", r.Path, kids)
		}
		for _, q := range append(below(r.Path), r.Path) {
			delete(model, q)
		}
	}
	for _, d := range a.Mkdir {
		inDirs("mkdir", d.Path)
		if k, ok := model[d.Path]; ok {
			t.Fatalf("mkdir %q: the remote has a %v there", d.Path, k)
		}
		model[d.Path] = Dir
	}
	uploaded := map[string]bool{}
	for _, e := range a.Upload {
		inDirs("upload", e.Path)
		if model[e.Path] == Dir {
			t.Fatalf("upload %q over a directory", e.Path)
		}
		model[e.Path], content[e.Path], uploaded[e.Path] = File, contents["l:"+e.Path], true
	}
	for _, e := range a.Link {
		inDirs("symlink", e.Path)
		if model[e.Path] == Dir {
			t.Fatalf("symlink %q over a directory", e.Path)
		}
		model[e.Path] = Symlink
	}
	for _, s := range a.SetAttrs {
		inDirs("setattr", s.Path)
		if k, ok := model[s.Path]; !ok || k == Symlink {
			t.Fatalf("setattr %q: the remote has %v there (chmod follows symlinks)", s.Path, k)
		}
	}

	// The remote now mirrors the local tree...
	claimed := map[string]bool{}
	files := 0
	for _, l := range local {
		if l.Ignored {
			continue
		}
		claimed[l.Path] = true
		if model[l.Path] != l.Kind {
			t.Fatalf("%q is a %v locally, a %v remotely after the sync", l.Path, l.Kind, model[l.Path])
		}
		if l.Kind == File {
			files++
			if content[l.Path] != contents["l:"+l.Path] {
				t.Fatalf("%q: remote content %d, local %d, and it was not sent", l.Path, content[l.Path], contents["l:"+l.Path])
			}
			if _, ok := a.Manifest.Files[l.Path]; !ok {
				t.Fatalf("%q is missing from the manifest", l.Path)
			}
		}
	}
	if len(a.Manifest.Files) != files {
		t.Fatalf("manifest lists %d files, the local tree has %d", len(a.Manifest.Files), files)
	}
	// ...plus ignored entries and the directories holding them.
	for p, k := range model {
		if claimed[p] || ignored[p] || p == ManifestName {
			continue
		}
		keeps := false
		for _, q := range below(p) {
			keeps = keeps || ignored[q]
		}
		if k != Dir || !keeps {
			t.Fatalf("%q (%v) is left remotely but is neither local nor ignored", p, k)
		}
	}
	// An ignored entry goes only when the local tree claims its path or
	// one above it, or when it is in one of our temporaries.
	for _, r := range remote {
		if !r.Ignored || slices.ContainsFunc(strings.Split(r.Path, "/"), isTempName) {
			continue
		}
		if _, ok := model[r.Path]; ok {
			continue
		}
		lost := true
		for d := r.Path; d != "."; d = path.Dir(d) {
			if claimed[d] {
				lost = false
			}
		}
		if lost {
			t.Fatalf("ignored remote entry %q was removed", r.Path)
		}
	}
}
