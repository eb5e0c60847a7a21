package treesync

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// ManifestName is the file in the remote target directory recording what
// the last successful sync wrote. It is never synced from the local tree.
const ManifestName = ".kmodvm-sync.json"

// tempMarker is part of every temporary name the sync writes:
// ".NAME.kmodvm-tmp-XXXXXXXX" (8 hex digits).
const tempMarker = ".kmodvm-tmp-"

// Kind is the type of a tree entry.
type Kind uint8

const (
	File    Kind = iota + 1 // regular file
	Dir                     // directory
	Symlink                 // symbolic link
	Other                   // device, socket, fifo: never synced
)

func (k Kind) String() string {
	switch k {
	case File:
		return "file"
	case Dir:
		return "dir"
	case Symlink:
		return "symlink"
	case Other:
		return "special file"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Entry is one file, directory or symlink of a tree, local or remote.
type Entry struct {
	Path  string      // slash-separated, relative to the tree root, clean
	Kind  Kind        //
	Size  int64       // files only
	Mtime int64       // ns since the epoch; remote: whole seconds (SFTP v3)
	Mode  fs.FileMode // permission bits only
	Link  string      // symlink target, as stored in the link
	// SHA256 is the hex content hash of a file, "" when not computed.
	// Plan asks for it through Actions.Verify.
	SHA256 string
	// Ignored marks a remote entry an ignore rule matches: it is never
	// deleted (not even when it is the last thing in a directory that is
	// gone locally) and its children are not listed.
	Ignored bool
}

// Manifest is what the remote target held after the last successful sync.
type Manifest struct {
	Version int                      `json:"version"`
	Files   map[string]ManifestEntry `json:"files"`
}

// ManifestEntry describes one file as it was sent.
type ManifestEntry struct {
	Size   int64  `json:"size"`
	Mtime  int64  `json:"mtime_ns"` // local mtime; the remote copy has it truncated to seconds
	Mode   uint32 `json:"mode"`
	SHA256 string `json:"sha256"`
}

const manifestVersion = 1

// Removal is one remote path to remove.
type Removal struct {
	Path      string
	Kind      Kind // remote kind: Dir is removed with rmdir (it is empty by then)
	Recursive bool // remove a directory with everything in it (type conflicts, stray temp dirs)
}

// SetAttr fixes the mode and/or mtime of a remote entry whose content is
// already right.
type SetAttr struct {
	Path     string
	SetMode  bool
	Mode     fs.FileMode
	SetMtime bool
	Mtime    int64 // ns
}

// Actions is what Plan decides. Executed in field order: Remove, Mkdir,
// Upload and Link, SetAttrs, then the manifest is written.
type Actions struct {
	// Verify lists files whose content must be compared by hash before the
	// plan is final: fill in Entry.SHA256 (local first, then remote) and
	// call Plan again. While it is not empty the other fields are partial.
	Verify []string

	Remove   []Removal // temp leftovers, type conflicts and stale entries; directories last, deepest first
	Mkdir    []Entry   // local directories missing remotely, parents first
	Upload   []Entry   // local files whose content differs or is missing remotely
	Link     []Entry   // local symlinks to create or re-point
	SetAttrs []SetAttr // mode and mtime fixes

	Changed   []string // paths whose content, link or mode changes (sorted)
	Deleted   []string // stale non-directory paths removed (sorted)
	Unchanged int      // files and symlinks already right

	// Manifest is the manifest to write once everything ran. Entries of
	// uploads carry the local hash if it was known; the uploader records
	// what it actually sent.
	Manifest Manifest
}

// CheckRel reports whether rel is a path a sync may touch: relative, clean,
// non-empty, no ".." element, no NUL.
func CheckRel(rel string) error {
	switch {
	case rel == "" || rel == ".":
		return errors.New("empty path")
	case strings.ContainsRune(rel, 0):
		return fmt.Errorf("path %q contains a NUL byte", rel)
	case path.IsAbs(rel):
		return fmt.Errorf("path %q is absolute", rel)
	case path.Clean(rel) != rel:
		return fmt.Errorf("path %q is not clean", rel)
	}
	for _, el := range strings.Split(rel, "/") {
		if el == ".." {
			return fmt.Errorf("path %q leaves the tree", rel)
		}
	}
	return nil
}

// checkTarget rejects remote target directories a sync must never manage.
func checkTarget(target string) error {
	switch {
	case target == "" || target == "." || target == "/":
		return fmt.Errorf("sync: refusing remote target directory %q; hint: give a dedicated directory such as /root/kmodvm/mymodule", target)
	case strings.ContainsRune(target, 0):
		return fmt.Errorf("sync: remote target directory %q contains a NUL byte", target)
	case path.Clean(target) != target:
		return fmt.Errorf("sync: remote target directory %q is not a clean path; hint: use %q", target, path.Clean(target))
	}
	for _, el := range strings.Split(target, "/") {
		if el == ".." {
			return fmt.Errorf("sync: remote target directory %q contains \"..\"", target)
		}
	}
	return nil
}

// RemotePath joins target and rel and checks the result stays strictly
// inside target. It is the only way the sync builds a remote path.
func RemotePath(target, rel string) (string, error) {
	if err := checkTarget(target); err != nil {
		return "", err
	}
	if err := CheckRel(rel); err != nil {
		return "", fmt.Errorf("sync: remote path: %w", err)
	}
	p := path.Join(target, rel)
	if !strings.HasPrefix(p, target+"/") {
		return "", fmt.Errorf("sync: remote path %q escapes %q", p, target)
	}
	return p, nil
}

// isTempName reports whether a base name is one of our temporary names.
func isTempName(base string) bool {
	if !strings.HasPrefix(base, ".") {
		return false
	}
	i := strings.LastIndex(base, tempMarker)
	if i < 1 {
		return false
	}
	suffix := base[i+len(tempMarker):]
	if len(suffix) != 8 {
		return false
	}
	for _, c := range suffix {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// Reserved reports whether rel is a name the sync keeps for itself: it never syncs a local
// file of that name.
func Reserved(rel string) bool {
	return rel == ManifestName || isTempName(path.Base(rel))
}

// sec truncates ns to whole seconds (floor), the resolution of SFTP v3.
func sec(ns int64) int64 {
	s := ns / 1e9
	if ns < 0 && ns%1e9 != 0 {
		s--
	}
	return s
}

func index(entries []Entry, side string) (map[string]*Entry, error) {
	m := make(map[string]*Entry, len(entries))
	for i := range entries {
		e := &entries[i]
		if err := CheckRel(e.Path); err != nil {
			return nil, fmt.Errorf("%s entry: %w", side, err)
		}
		if e.Kind < File || e.Kind > Other {
			return nil, fmt.Errorf("%s entry %q: unknown kind %d", side, e.Path, e.Kind)
		}
		if _, dup := m[e.Path]; dup {
			return nil, fmt.Errorf("%s entry %q listed twice", side, e.Path)
		}
		m[e.Path] = e
	}
	for p := range m {
		if dir := path.Dir(p); dir != "." {
			if parent, ok := m[dir]; !ok || parent.Kind != Dir {
				return nil, fmt.Errorf("%s entry %q has no parent directory entry", side, p)
			}
		}
	}
	return m, nil
}

func sortedPaths(m map[string]*Entry) []string {
	ps := make([]string, 0, len(m))
	for p := range m {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// below answers whether paths are strictly below one of the directories in
// dirs, remembering the answer for every directory it passes: a whole tree
// then costs time linear in its size. Walking up from every path instead
// cost time cubic in the depth of a deep tree (2,000 levels: 8 s).
// Directories may be added to dirs while paths are tested in sorted order:
// a path is tested only after every directory above it.
type below struct {
	dirs map[string]bool
	memo map[string]bool // directory -> it is in dirs or below one
}

func newBelow(dirs map[string]bool) *below {
	return &below{dirs: dirs, memo: map[string]bool{}}
}

func (b *below) test(p string) bool {
	var todo []string
	v := false
	for d := path.Dir(p); d != "."; d = path.Dir(d) {
		if m, ok := b.memo[d]; ok {
			v = m
			break
		}
		todo = append(todo, d)
	}
	for i := len(todo) - 1; i >= 0; i-- {
		v = v || b.dirs[todo[i]]
		b.memo[todo[i]] = v
	}
	return v
}

// Plan decides what to change remotely so the remote tree matches the
// local one. local holds the entries to sync (ignored entries are left
// out); remote holds what the target holds, ignored entries flagged; the
// manifest is the one the last successful sync wrote (zero value if none).
// Plan does no I/O. Every path it returns passes CheckRel.
func Plan(local, remote []Entry, manifest Manifest) (Actions, error) {
	lm, err := index(local, "local")
	if err != nil {
		return Actions{}, fmt.Errorf("plan sync: %w", err)
	}
	rm, err := index(remote, "remote")
	if err != nil {
		return Actions{}, fmt.Errorf("plan sync: %w", err)
	}
	for p, l := range lm {
		if l.Ignored {
			delete(lm, p)
		}
	}
	for p, l := range lm {
		// Nothing inside an ignored directory is synced: writing it could
		// go through whatever the remote holds at the ignored path, a
		// symlink included.
		if dir := path.Dir(p); dir != "." && lm[dir] == nil {
			return Actions{}, fmt.Errorf("plan sync: local entry %q is inside the ignored directory %q", p, dir)
		}
		if Reserved(p) {
			return Actions{}, fmt.Errorf("plan sync: local entry %q uses a name reserved for the sync", p)
		}
		if l.Kind == Other {
			return Actions{}, fmt.Errorf("plan sync: local entry %q is a %s", p, l.Kind)
		}
	}

	a := Actions{Manifest: Manifest{Version: manifestVersion, Files: map[string]ManifestEntry{}}}

	// Remote pass: leftovers, conflicts, stale entries.
	gone := map[string]bool{} // directories removed recursively
	underGone := newBelow(gone)
	var staleDirs []string
	for _, p := range sortedPaths(rm) {
		r := rm[p]
		if underGone.test(p) || p == ManifestName {
			continue
		}
		if isTempName(path.Base(p)) {
			a.Remove = append(a.Remove, Removal{Path: p, Kind: r.Kind, Recursive: r.Kind == Dir})
			if r.Kind == Dir {
				gone[p] = true
			}
			continue
		}
		l, inLocal := lm[p]
		switch {
		case !inLocal && r.Ignored:
			// Built by the guest or excluded by the user: leave it.
		case !inLocal && r.Kind == Dir:
			staleDirs = append(staleDirs, p)
		case !inLocal:
			a.Remove = append(a.Remove, Removal{Path: p, Kind: r.Kind})
			a.Deleted = append(a.Deleted, p)
		case (l.Kind == Dir) != (r.Kind == Dir):
			// A file became a directory or the other way round: the old
			// one has to go first (rename cannot replace across types).
			a.Remove = append(a.Remove, Removal{Path: p, Kind: r.Kind, Recursive: r.Kind == Dir})
			if r.Kind == Dir {
				gone[p] = true
			}
		}
	}
	// A stale directory goes only if nothing ignored is left in it.
	keep := map[string]bool{}
	for p, r := range rm {
		if r.Ignored && !underGone.test(p) {
			// Where keep holds a directory, it holds all above it.
			for d := path.Dir(p); d != "." && !keep[d]; d = path.Dir(d) {
				keep[d] = true
			}
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(staleDirs)))
	for _, d := range staleDirs {
		if !keep[d] && !underGone.test(d) {
			a.Remove = append(a.Remove, Removal{Path: d, Kind: Dir})
		}
	}

	// Local pass: what to create or fix.
	for _, p := range sortedPaths(lm) {
		l := lm[p]
		r, ok := rm[p]
		if ok && (underGone.test(p) || gone[p] || (l.Kind == Dir) != (r.Kind == Dir)) {
			r, ok = nil, false
		}
		switch l.Kind {
		case Dir:
			if !ok {
				a.Mkdir = append(a.Mkdir, *l)
			} else if r.Mode != l.Mode {
				a.SetAttrs = append(a.SetAttrs, SetAttr{Path: p, SetMode: true, Mode: l.Mode})
			}
		case Symlink:
			if ok && r.Kind == Symlink && r.Link == l.Link {
				a.Unchanged++
			} else {
				a.Link = append(a.Link, *l)
				a.Changed = append(a.Changed, p)
			}
		case File:
			planFile(&a, l, r, manifest)
		}
	}
	sort.Strings(a.Changed)
	sort.Strings(a.Deleted)
	return a, nil
}

// planFile decides one local regular file; r is nil when the remote side
// has nothing usable at that path.
func planFile(a *Actions, l, r *Entry, manifest Manifest) {
	p := l.Path
	upload := func() {
		a.Upload = append(a.Upload, *l)
		a.Changed = append(a.Changed, p)
		a.Manifest.Files[p] = ManifestEntry{Size: l.Size, Mtime: l.Mtime, Mode: uint32(l.Mode), SHA256: l.SHA256}
	}
	if r == nil || r.Kind != File || r.Size != l.Size {
		upload()
		return
	}
	m, inManifest := manifest.Files[p]
	// The remote copy is what the manifest describes if its size and
	// mtime are still those we set.
	remoteAsSent := inManifest && m.SHA256 != "" && r.Size == m.Size && sec(r.Mtime) == sec(m.Mtime)

	var hash string
	switch {
	case remoteAsSent && m.Size == l.Size && m.Mtime == l.Mtime:
		hash = m.SHA256 // fast path: nobody touched either side
	case l.SHA256 == "":
		a.Verify = append(a.Verify, p)
		return
	default:
		remoteHash := r.SHA256
		if remoteAsSent {
			remoteHash = m.SHA256
		}
		if remoteHash == "" {
			a.Verify = append(a.Verify, p)
			return
		}
		if remoteHash != l.SHA256 {
			upload()
			return
		}
		hash = l.SHA256
	}

	a.Manifest.Files[p] = ManifestEntry{Size: l.Size, Mtime: l.Mtime, Mode: uint32(l.Mode), SHA256: hash}
	fix := SetAttr{Path: p}
	if r.Mode != l.Mode {
		fix.SetMode, fix.Mode = true, l.Mode
	}
	if sec(r.Mtime) != sec(l.Mtime) {
		fix.SetMtime, fix.Mtime = true, l.Mtime
	}
	if fix.SetMode || fix.SetMtime {
		a.SetAttrs = append(a.SetAttrs, fix)
	}
	if fix.SetMode {
		a.Changed = append(a.Changed, p)
	} else {
		a.Unchanged++
	}
}
