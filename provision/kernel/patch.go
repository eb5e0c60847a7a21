package kernel

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/bluekeyes/go-gitdiff/gitdiff"
	"github.com/kmodvm/kmodvm/images/ondisk"
)

// Patches (kmodvm.yaml kernel.patches) are applied to the build tree before the Kconfig pass
// and taken out again after the build, so the tree, shared by every variant of its source,
// is clean for the next one. go-gitdiff parses them (git format-patch files, mails, plain
// unified diffs) and applies each hunk with exact context; kmodvm adds what `git am` does on
// top: splitting an mbox series into its patches, and finding a hunk whose context moved
// (an offset), the nearest place first. There is no fuzz: context must match exactly.

// patchFile is one kernel.patches entry, read once: its bytes are part of the cache key.
type patchFile struct {
	Name string // as the request gives it (absolute after config loading)
	Data []byte
}

// readPatches reads the request's patch files; relative paths resolve against baseDir.
func readPatches(paths []string, baseDir string) ([]patchFile, error) {
	var out []patchFile
	for i, p := range paths {
		full := p
		if !filepath.IsAbs(full) {
			full = filepath.Join(baseDir, p)
		}
		data, err := os.ReadFile(full)
		if err != nil {
			return nil, configError(fmt.Errorf("kernel.patches[%d]: read %s: %w; hint: the path is relative to kmodvm.yaml", i, full, err))
		}
		out = append(out, patchFile{Name: full, Data: data})
	}
	return out, nil
}

// variantParts are the cache key's parts for the patches (by content, in order) and the
// bindings; none when there are neither, so such keys are what they were before.
func variantParts(patches []patchFile, bindings []string) []string {
	var parts []string
	for _, p := range patches {
		sum := sha256.Sum256(p.Data)
		parts = append(parts, "patch:"+hex.EncodeToString(sum[:]))
	}
	for _, h := range bindings {
		parts = append(parts, "binding:"+h)
	}
	return parts
}

// patch is one patch of a patch file: a whole file, or one mail of an mbox series.
type patch struct {
	file    string // the patch file
	index   int    // 1-based, among the patches of its file that change files
	count   int
	subject string // "" for a plain diff
	files   []*gitdiff.File
}

func (p patch) String() string {
	s := p.file
	if p.count > 1 {
		s += fmt.Sprintf(" (patch %d of %d", p.index, p.count)
		if p.subject != "" {
			s += fmt.Sprintf(", %q", p.subject)
		}
		s += ")"
	} else if p.subject != "" {
		s += fmt.Sprintf(" (%q)", p.subject)
	}
	return s
}

// mboxFrom is the line that starts a mail in an mbox: git format-patch writes
// "From <sha> Mon Sep 17 00:00:00 2001", b4 and mail clients "From <addr> <date>".
var mboxFrom = regexp.MustCompile(`(?m)^From \S+ +[A-Z][a-z]{2} [A-Z][a-z]{2} +\d+ \d\d:\d\d:\d\d \d{4}\n`)

// parsePatches splits a patch file into its patches (a mail each, in order; cover letters and
// other mails without a diff are skipped) and parses them.
func parsePatches(pf patchFile) ([]patch, error) {
	data := pf.Data
	var chunks [][]byte
	locs := mboxFrom.FindAllIndex(data, -1)
	if len(locs) == 0 {
		chunks = [][]byte{data}
	}
	for i, l := range locs {
		end := len(data)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		chunks = append(chunks, data[l[0]:end])
	}
	var out []patch
	for _, c := range chunks {
		files, preamble, err := gitdiff.Parse(bytes.NewReader(c))
		if err != nil {
			return nil, configError(fmt.Errorf("kernel.patches: %s is not a patch git can apply: %w; hint: make it with git format-patch or diff -u, run from the top of the kernel tree", pf.Name, err))
		}
		if len(files) == 0 {
			continue
		}
		plain := !bytes.HasPrefix(c, []byte("diff --git ")) && !bytes.Contains(c, []byte("\ndiff --git "))
		for _, f := range files {
			if plain { // a plain diff's names carry one leading directory, as patch -p1 takes them
				f.OldName, f.NewName = stripComponent(f.OldName), stripComponent(f.NewName)
			}
			for _, name := range []string{f.OldName, f.NewName} {
				if name != "" && !filepath.IsLocal(name) {
					return nil, configError(fmt.Errorf("kernel.patches: %s changes %q, which is not a path inside the kernel tree; hint: make the patch from the top of the kernel tree (git format-patch, or diff -u a/ b/)", pf.Name, name))
				}
			}
		}
		subject := ""
		if h, err := gitdiff.ParsePatchHeader(preamble); err == nil {
			subject = h.Title
		}
		out = append(out, patch{file: pf.Name, subject: subject, files: files})
	}
	if len(out) == 0 {
		return nil, configError(fmt.Errorf("kernel.patches: %s holds no diff; hint: make it with git format-patch or diff -u", pf.Name))
	}
	for i := range out {
		out[i].index, out[i].count = i+1, len(out)
	}
	return out, nil
}

func stripComponent(name string) string {
	if _, rest, ok := strings.Cut(name, "/"); ok {
		return rest
	}
	return name
}

// patchFailure is why one file of a patch does not apply.
type patchFailure struct {
	target string // the file in the kernel tree
	hunk   string // "@@ -10,6 +10,7 @@ int foo(void)"; "" for a file-level problem
	detail string // what is wrong, naming the line of the file when about one
}

// PatchError is a kernel.patches patch that does not apply to the kernel source.
type PatchError struct {
	Patch   string // the patch file, and which patch of its series
	Failure patchFailure
	Kernel  string // "Linux 6.12.8", from the tree's Makefile
	Source  string // the source's identity, "package:linux-source-6.12=6.12.8-1"
}

func (e *PatchError) Error() string {
	f := e.Failure
	where := f.target
	if f.hunk != "" {
		where = fmt.Sprintf("hunk %q of %s", f.hunk, f.target)
	}
	return fmt.Sprintf("kernel.patches: %s does not apply to %s (%s): %s %s; nothing was built and the kernel tree was restored; hint: rebase the patch onto %s, or check that kernel.source is the kernel it was made for",
		e.Patch, e.Kernel, e.Source, where, f.detail, e.Kernel)
}

// journalDir, in a build tree with patches applied, keeps the original of every file they
// changed (orig/REL) and the list of those files (files: "1 REL" for a file that existed, "0
// REL" for one they created), each line written before the change it covers: the tree can
// be restored after the build, or after a build that was killed.
const journalDir = ".kmodvm-patched"

// touchedList, in a build tree, lists files that patches changed and that were restored
// since: their restored content is older than the objects built from the patched one, so
// once the tree is filled again (a mirror copies back a local tree's mtimes) they get a fresh
// mtime, and make rebuilds what depends on them.
const touchedList = ".kmodvm-patch-touched"

// journal records the originals of the files it is told about, once each.
type journal struct {
	tree string
	seen map[string]bool
}

func newJournal(tree string) (*journal, error) {
	if err := os.MkdirAll(filepath.Join(tree, journalDir, "orig"), 0o755); err != nil {
		return nil, fmt.Errorf("start the patch journal: %w", err)
	}
	return &journal{tree: tree, seen: map[string]bool{}}, nil
}

// save keeps the original of rel, if not kept yet, before it is changed.
func (j *journal) save(rel string) error {
	if j.seen[rel] {
		return nil
	}
	j.seen[rel] = true
	existed := "0"
	if _, err := os.Lstat(filepath.Join(j.tree, rel)); err == nil {
		existed = "1"
		if err := ondisk.CopyFile(filepath.Join(j.tree, rel), filepath.Join(j.tree, journalDir, "orig", rel)); err != nil {
			return fmt.Errorf("keep the original of %s: %w", rel, err)
		}
	}
	f, err := os.OpenFile(filepath.Join(j.tree, journalDir, "files"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, werr := fmt.Fprintf(f, "%s %s\n", existed, rel)
	return errors.Join(werr, f.Sync(), f.Close())
}

// restorePatched takes applied patches (and bindings) out of tree: every file they changed
// gets its original content back, every file they created is removed, and the changed files
// are listed for touchRestored. Without a journal it does nothing.
func restorePatched(tree string) error {
	dir := filepath.Join(tree, journalDir)
	data, err := os.ReadFile(filepath.Join(dir, "files"))
	if errors.Is(err, fs.ErrNotExist) {
		return os.RemoveAll(dir)
	}
	if err != nil {
		return err
	}
	var restored []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		existed, rel, ok := strings.Cut(l, " ")
		if !ok {
			continue
		}
		p := filepath.Join(tree, rel)
		if existed == "0" {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			continue
		}
		orig := filepath.Join(dir, "orig", rel)
		fi, err := os.Stat(orig)
		if err != nil {
			return fmt.Errorf("restore %s: %w", rel, err)
		}
		content, err := os.ReadFile(orig)
		if err != nil {
			return err
		}
		if err := ondisk.WriteFileAtomic(p, content, fi.Mode().Perm()); err != nil { // a fresh mtime
			return fmt.Errorf("restore %s: %w", rel, err)
		}
		restored = append(restored, rel)
	}
	if len(restored) > 0 {
		f, err := os.OpenFile(filepath.Join(tree, touchedList), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		_, werr := f.WriteString(strings.Join(restored, "\n") + "\n")
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			return err
		}
	}
	return os.RemoveAll(dir)
}

// touchRestored gives the files restorePatched restored a fresh mtime, once the tree is
// filled from its source again.
func touchRestored(tree string) error {
	list := filepath.Join(tree, touchedList)
	data, err := os.ReadFile(list)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	now := time.Now()
	for _, rel := range strings.Fields(string(data)) {
		if err := os.Chtimes(filepath.Join(tree, rel), now, now); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return os.Remove(list)
}

// applyPatches applies the patches in order to tree, recording every change in the journal.
// On a failure the caller restores the tree.
func applyPatches(j *journal, pfs []patchFile, sourceID string) error {
	for _, pf := range pfs {
		ps, err := parsePatches(pf)
		if err != nil {
			return err
		}
		for _, p := range ps {
			for _, f := range p.files {
				if fail := applyFile(j, f); fail != nil {
					if fail.err != nil {
						return fmt.Errorf("apply %s to %s: %w", p, fail.target, fail.err)
					}
					return configError(&PatchError{Patch: p.String(), Failure: fail.patchFailure, Kernel: kernelVersion(j.tree), Source: sourceID})
				}
			}
		}
	}
	return nil
}

// applyResult is a failure to apply one file: a conflict with the source, or an I/O error.
type applyResult struct {
	patchFailure
	err error
}

// applyFile applies one file's changes in the tree.
func applyFile(j *journal, f *gitdiff.File) *applyResult {
	src, dst := f.OldName, f.NewName
	if f.IsNew {
		src = ""
	}
	if f.IsDelete {
		dst = ""
	}
	target := dst
	if target == "" {
		target = src
	}
	ioErr := func(err error) *applyResult {
		return &applyResult{patchFailure: patchFailure{target: target}, err: err}
	}
	conflict := func(detail string) *applyResult {
		return &applyResult{patchFailure: patchFailure{target: target, detail: detail}}
	}
	var old []byte
	mode := os.FileMode(0o644)
	if src != "" {
		p := filepath.Join(j.tree, src)
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			return conflict("changes a file this kernel source does not have")
		}
		mode = fi.Mode().Perm()
		if old, err = os.ReadFile(p); err != nil {
			return ioErr(err)
		}
	} else if _, err := os.Lstat(filepath.Join(j.tree, dst)); err == nil {
		return conflict("creates a file this kernel source already has")
	}
	if f.NewMode != 0 {
		mode = f.NewMode.Perm()
	}
	var out []byte
	switch {
	case f.IsBinary:
		var buf bytes.Buffer
		if err := gitdiff.Apply(&buf, bytes.NewReader(old), f); err != nil {
			return conflict("is a binary change that does not apply: " + err.Error())
		}
		out = buf.Bytes()
	default:
		var fail *patchFailure
		out, fail = applyText(old, f.TextFragments)
		if fail != nil {
			fail.target = target
			return &applyResult{patchFailure: *fail}
		}
	}
	if src != "" && (dst == "" || (f.IsRename && src != dst)) {
		if err := j.save(src); err != nil {
			return ioErr(err)
		}
		if err := os.Remove(filepath.Join(j.tree, src)); err != nil {
			return ioErr(err)
		}
	}
	if dst != "" {
		if err := j.save(dst); err != nil {
			return ioErr(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(j.tree, dst)), 0o755); err != nil {
			return ioErr(err)
		}
		if err := ondisk.WriteFileAtomic(filepath.Join(j.tree, dst), out, mode); err != nil {
			return ioErr(err)
		}
	}
	return nil
}

// applyText applies text hunks to src in order. A hunk applies where its old lines (context
// and removed lines) match src exactly: at the line it names, else at the nearest line
// after the previous hunk where they do, as git apply finds a moved hunk.
func applyText(src []byte, frags []*gitdiff.TextFragment) ([]byte, *patchFailure) {
	lines := splitLines(src)
	var buf bytes.Buffer
	a := gitdiff.NewTextApplier(&buf, bytes.NewReader(src))
	next := int64(0) // the first line no earlier hunk used
	for _, frag := range frags {
		shifted := *frag
		if frag.OldLines > 0 {
			old := oldLines(frag)
			want := max(frag.OldPosition-1, 0)
			at, ok := findHunk(lines, old, want, next)
			if !ok {
				return nil, &patchFailure{hunk: strings.TrimSpace(frag.Header()), detail: mismatch(lines, old, want)}
			}
			shifted.OldPosition = at + 1
			next = at + int64(len(old))
		}
		if err := a.ApplyFragment(&shifted); err != nil {
			return nil, &patchFailure{hunk: strings.TrimSpace(frag.Header()), detail: fmt.Sprintf("does not apply at line %d: %v", shifted.OldPosition, err)}
		}
	}
	if err := a.Close(); err != nil {
		return nil, &patchFailure{detail: "does not apply: " + err.Error()}
	}
	return buf.Bytes(), nil
}

// findHunk returns where old matches lines, from line min on, nearest want first.
func findHunk(lines, old []string, want, min int64) (int64, bool) {
	last := int64(len(lines) - len(old))
	for d := int64(0); want-d >= min || want+d <= last; d++ {
		for _, at := range []int64{want - d, want + d} {
			if at >= min && at <= last && matchAt(lines, old, at) {
				return at, true
			}
			if d == 0 {
				break
			}
		}
	}
	return 0, false
}

func matchAt(lines, old []string, at int64) bool {
	for i, l := range old {
		if lines[at+int64(i)] != l {
			return false
		}
	}
	return true
}

// mismatch says how the source differs from what the hunk expects at line want (0-based).
func mismatch(lines, old []string, want int64) string {
	for i, l := range old {
		at := want + int64(i)
		if at >= int64(len(lines)) {
			return fmt.Sprintf("expects line %d to be %q, but the file ends at line %d, and the hunk's lines are nowhere else in it", at+1, strings.TrimSuffix(l, "\n"), len(lines))
		}
		if lines[at] != l {
			return fmt.Sprintf("expects line %d to be %q, but it is %q, and the hunk's lines are nowhere else in the file", at+1, strings.TrimSuffix(l, "\n"), strings.TrimSuffix(lines[at], "\n"))
		}
	}
	return "overlaps an earlier hunk"
}

// oldLines are the lines a hunk expects in the source: context and removed lines.
func oldLines(frag *gitdiff.TextFragment) []string {
	var old []string
	for _, l := range frag.Lines {
		if l.Old() {
			old = append(old, l.Line)
		}
	}
	return old
}

// splitLines splits data after each newline; a last line without one is kept as it is.
func splitLines(data []byte) []string {
	var lines []string
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			lines = append(lines, string(data))
			break
		}
		lines = append(lines, string(data[:i+1]))
		data = data[i+1:]
	}
	return lines
}

// kernelVersion names the kernel in tree for messages: "Linux 6.12.8", from its Makefile.
func kernelVersion(tree string) string {
	data, err := os.ReadFile(filepath.Join(tree, "Makefile"))
	if err != nil {
		return "this kernel"
	}
	v := map[string]string{}
	for _, l := range strings.SplitN(string(data), "\n", 20) {
		k, val, ok := strings.Cut(l, "=")
		if ok {
			v[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
	}
	if v["VERSION"] == "" || v["PATCHLEVEL"] == "" {
		return "this kernel"
	}
	s := "Linux " + v["VERSION"] + "." + v["PATCHLEVEL"]
	if v["SUBLEVEL"] != "" && v["SUBLEVEL"] != "0" {
		s += "." + v["SUBLEVEL"]
	}
	return s + v["EXTRAVERSION"]
}
