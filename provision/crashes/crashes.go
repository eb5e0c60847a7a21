// Package crashes keeps the evidence of module runs that crashed the guest's kernel: one
// directory per crash (a bundle) under the VM's state directory, holding the console log of
// the run, the module's kernel log, the decoded traces, the .ko files that were loaded and
// meta.json. Bundles are written atomically (a temporary directory renamed into place) and
// only the newest few are kept.
package crashes

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/kmodvm/kmodvm/provision/ktrace"
)

// Schema is meta.json's schema.
const Schema = "kmodvm.crash/v1"

// DefaultKeep is how many bundles a VM keeps when its settings do not say.
const DefaultKeep = 20

// The files of a bundle.
const (
	MetaFile    = "meta.json"
	ConsoleFile = "console.log"
	KmsgFile    = "kmsg.txt"
	TraceText   = "trace.txt"
	TraceJSON   = "trace.json"
)

// tmpPrefix names a bundle being written; such a directory is never listed, and Prune
// removes what a killed kmodvm left.
const tmpPrefix = ".tmp-"

// Meta is a bundle's meta.json: what crashed, in which kernel, how it was run.
type Meta struct {
	Schema string    `json:"schema"`
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	VM     string    `json:"vm"`
	// Command is the kmodvm command line (or MCP tool) of the run.
	Command   string   `json:"command"`
	ModuleDir string   `json:"module_dir"`
	Modules   []string `json:"modules"`
	// Step is the load, unload or KUnit run that crashed: "load rust_oops (#1)".
	Step    string `json:"step"`
	Module  string `json:"module"` // the module that step ran
	Class   string `json:"class"`  // the kernel log class of its first finding
	Verdict string `json:"verdict"`
	Title   string `json:"title"`
	// GuestRestarted says the guest died or hung and kmodvm restarted it.
	GuestRestarted bool   `json:"guest_restarted"`
	KernelRelease  string `json:"kernel_release"`
	ConfigHash     string `json:"config_hash"`
	// SourceRevision is `git describe --always --dirty` of the module directory; "" when it
	// is not in a git work tree.
	SourceRevision string `json:"source_revision"`
	// Kos are the .ko files kept in the bundle, by file name; KoNote says why some or all
	// were not.
	Kos    []string `json:"kos"`
	KoNote string   `json:"ko_note,omitempty"`
	// ConsoleTruncated says console.log holds only the last MaxConsole bytes the run wrote.
	ConsoleTruncated bool `json:"console_truncated,omitempty"`
	// Notes say what else the bundle lacks, and why (a console log kmodvm could not read).
	Notes []string `json:"notes,omitempty"`
}

// Bundle is what Save writes.
type Bundle struct {
	Meta    Meta // Schema and ID are set by Save
	Console []byte
	// Kmsg is the module-scoped kernel log of the run, one line each (headers included).
	Kmsg   []string
	Traces []ktrace.Trace
	// Kos are host paths of the .ko files to keep; a path that is not a regular file (a
	// symlink the module's Makefile left) is not followed, and said in Meta.KoNote.
	Kos []string
}

// Save writes b as a new bundle in dir, named by its time and module, and returns its ID.
// The bundle appears whole or not at all.
func Save(dir string, b Bundle) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create the crash directory: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, tmpPrefix)
	if err != nil {
		return "", fmt.Errorf("create a crash bundle: %w", err)
	}
	id, err := save(dir, tmp, b)
	if err != nil {
		return "", errors.Join(fmt.Errorf("write crash bundle: %w", err), os.RemoveAll(tmp))
	}
	return id, nil
}

func save(dir, tmp string, b Bundle) (string, error) {
	m := b.Meta
	m.Schema = Schema
	if m.Time.IsZero() {
		m.Time = time.Now()
	}
	m.Kos = []string{}
	var notes []string
	if m.KoNote != "" {
		notes = append(notes, m.KoNote)
	}
	for _, ko := range b.Kos {
		name := filepath.Base(ko)
		if err := copyRegular(ko, filepath.Join(tmp, name)); err != nil {
			notes = append(notes, fmt.Sprintf("%s not kept: %v", name, err))
			continue
		}
		m.Kos = append(m.Kos, name)
	}
	m.KoNote = strings.Join(notes, "; ")
	if m.Modules == nil {
		m.Modules = []string{}
	}
	traces := b.Traces
	if traces == nil {
		traces = []ktrace.Trace{}
	}
	tj, err := json.MarshalIndent(traces, "", "  ")
	if err != nil {
		return "", err
	}
	files := map[string][]byte{
		ConsoleFile: b.Console,
		KmsgFile:    []byte(joinLines(b.Kmsg)),
		TraceText:   []byte(FormatTraces(traces)),
		TraceJSON:   append(tj, '\n'),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), data, 0o600); err != nil {
			return "", err
		}
	}
	base := m.Time.UTC().Format("20060102-150405") + "-" + slug(m.Module)
	for n := 1; ; n++ {
		m.ID = base
		if n > 1 {
			m.ID = fmt.Sprintf("%s-%d", base, n)
		}
		if _, err := os.Lstat(filepath.Join(dir, m.ID)); err == nil {
			continue
		}
		mj, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(tmp, MetaFile), append(mj, '\n'), 0o600); err != nil {
			return "", err
		}
		// rename(2) replaces an empty directory but never a bundle (never empty): a bundle
		// of the same name saved since the Lstat is a collision like any other.
		err = os.Rename(tmp, filepath.Join(dir, m.ID))
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		return m.ID, nil
	}
}

// FormatTraces is trace.txt: each trace as ktrace.Format renders it, a blank line between.
func FormatTraces(traces []ktrace.Trace) string {
	parts := make([]string, len(traces))
	for i, t := range traces {
		parts[i] = ktrace.Format(t)
	}
	return strings.Join(parts, "\n")
}

func joinLines(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// slug makes a module name safe and short in a bundle ID: [a-z0-9_-], at most 40 bytes.
func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 40 {
			break
		}
	}
	if b.Len() == 0 {
		return "crash"
	}
	return b.String()
}

// copyRegular copies the regular file src to dst without following a symlink at src.
func copyRegular(src, dst string) error {
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file")
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, werr := io.Copy(out, in)
	return errors.Join(werr, out.Close())
}

// Prune removes all but the newest keep bundles in dir (by ID, which starts with the time),
// and what a killed kmodvm left half-written. Call it holding the VM's lock: a bundle being
// saved looks half-written.
func Prune(dir string, keep int) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list crash bundles: %w", err)
	}
	var ids []string
	var errs []error
	for _, e := range ents {
		switch {
		case strings.HasPrefix(e.Name(), tmpPrefix):
			errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
		case e.IsDir() && !strings.HasPrefix(e.Name(), "."):
			ids = append(ids, e.Name())
		}
	}
	sortIDs(ids)
	for len(ids) > max(keep, 0) {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, ids[0])))
		ids = ids[1:]
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove old crash bundles: %w", err)
	}
	return nil
}

// sortIDs sorts bundle IDs oldest first: by the time they start with, then by the number a
// collision added ("-2" before "-10"), then as text.
func sortIDs(ids []string) {
	sort.Slice(ids, func(i, j int) bool {
		a, b := ids[i], ids[j]
		if len(a) >= 15 && len(b) >= 15 && a[:15] != b[:15] {
			return a[:15] < b[:15]
		}
		ab, an := splitSuffix(a)
		bb, bn := splitSuffix(b)
		if ab != bb {
			return ab < bb
		}
		return an < bn
	})
}

// splitSuffix splits "…-rust_oops-3" into "…-rust_oops" and 3; no suffix is 1.
func splitSuffix(id string) (string, int) {
	i := strings.LastIndexByte(id, '-')
	if i < 16 { // the dash between the date and the time, or the one before the module
		return id, 1
	}
	n := 0
	for _, c := range id[i+1:] {
		if c < '0' || c > '9' || n > 1e6 {
			return id, 1
		}
		n = n*10 + int(c-'0')
	}
	if n < 2 {
		return id, 1
	}
	return id[:i], n
}

// List reads the bundles in dir, newest first. A directory without a readable meta.json
// (not a bundle kmodvm wrote) is left out.
func List(dir string) ([]Meta, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list crash bundles: %w", err)
	}
	var out []Meta
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		m, err := readMeta(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		m.ID = e.Name() // the directory is the bundle, whatever its meta.json says
		out = append(out, m)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.After(out[j].Time)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

func readMeta(bundle string) (Meta, error) {
	data, err := os.ReadFile(filepath.Join(bundle, MetaFile))
	if err != nil {
		return Meta{}, err
	}
	var m Meta
	if err := json.Unmarshal(data, &m); err != nil {
		return Meta{}, fmt.Errorf("read %s: %w", filepath.Join(bundle, MetaFile), err)
	}
	return m, nil
}

// ErrNotFound: no bundle has the ID, or an ID starting with it.
var ErrNotFound = errors.New("no crash bundle")

// AmbiguousError: more than one bundle's ID starts with Ref.
type AmbiguousError struct {
	Ref string
	IDs []string
}

func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("%q is the start of %d crash bundle IDs (%s)", e.Ref, len(e.IDs), strings.Join(e.IDs, ", "))
}

// Loaded is one bundle as `kmodvm crashes show` prints it.
type Loaded struct {
	Meta
	Dir       string
	Traces    []ktrace.Trace
	TraceText string
}

// Load reads the bundle whose ID is ref, or the only one whose ID starts with ref. It
// returns an error wrapping ErrNotFound, or an *AmbiguousError.
func Load(dir, ref string) (*Loaded, error) {
	all, err := List(dir)
	if err != nil {
		return nil, err
	}
	var match []string
	for _, m := range all {
		if m.ID == ref {
			match = []string{m.ID}
			break
		}
		if ref != "" && strings.HasPrefix(m.ID, ref) {
			match = append(match, m.ID)
		}
	}
	switch {
	case len(match) == 0:
		return nil, fmt.Errorf("%w with the ID %q", ErrNotFound, ref)
	case len(match) > 1:
		return nil, &AmbiguousError{Ref: ref, IDs: match}
	}
	b := filepath.Join(dir, match[0])
	m, err := readMeta(b)
	if err != nil {
		return nil, err
	}
	m.ID = match[0]
	l := &Loaded{Meta: m, Dir: b, Traces: []ktrace.Trace{}}
	if data, err := os.ReadFile(filepath.Join(b, TraceJSON)); err == nil {
		if err := json.Unmarshal(data, &l.Traces); err != nil {
			return nil, fmt.Errorf("read %s: %w", filepath.Join(b, TraceJSON), err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read the crash bundle's traces: %w", err)
	}
	if data, err := os.ReadFile(filepath.Join(b, TraceText)); err == nil {
		l.TraceText = string(data)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read the crash bundle's traces: %w", err)
	}
	return l, nil
}
