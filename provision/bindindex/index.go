package bindindex

import (
	"bufio"
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/kmodvm/kmodvm/images/ondisk"
)

// Version is the index format's version: Load refuses another one, as it refuses no index.
const Version = 1

// IndexFile is the index's file name in its directory.
const IndexFile = "index.gob"

// ErrNoIndex is returned (wrapped) by Load when the directory holds no index of this
// Version: a kernel built before kmodvm kept one, or by another kmodvm.
var ErrNoIndex = errors.New("no bindings index")

// Index is a kernel's bindings and their uses in the kernel crate. Its files (File fields)
// are relative to its directory (Dir).
type Index struct {
	Version int
	Items   []Item
	Uses    []Use

	dir    string
	byName map[string][]int // Name and Enumerator -> Items
	usedBy map[string][]int // crate::Name -> Uses
}

// Hit is an item a query found and the kernel crate's uses of it.
type Hit struct {
	Item
	Uses []Use
}

// Stage copies from a built kernel tree into dst the generated files and the kernel crate's
// sources, and writes their index there: dst is then a self-contained Index directory. A
// tree without bindings_generated.rs (a kernel without CONFIG_RUST) is an error; the
// helpers and uapi files are indexed when the kernel has them.
func Stage(ctx context.Context, tree, dst string) error {
	for _, g := range GeneratedFiles {
		err := ondisk.CopyFile(filepath.Join(tree, g.Path), filepath.Join(dst, g.Path))
		if err != nil && (g.Required || !errors.Is(err, os.ErrNotExist)) {
			return fmt.Errorf("keep %s: %w", g.Path, err)
		}
	}
	_, err := ondisk.CopyTree(ctx, filepath.Join(tree, KernelDir), filepath.Join(dst, KernelDir), ondisk.CopyOptions{
		Skip: func(_ string, d fs.DirEntry) bool { return !d.IsDir() && !strings.HasSuffix(d.Name(), ".rs") },
	})
	if err != nil {
		return fmt.Errorf("keep the kernel crate's sources: %w", err)
	}
	ix, err := Build(dst)
	if err != nil {
		return err
	}
	return ix.Write()
}

// Build indexes the generated files and the kernel crate's sources under dir (a kernel tree,
// or a directory Stage filled).
func Build(dir string) (*Index, error) {
	ix := &Index{Version: Version, dir: dir}
	for _, g := range GeneratedFiles {
		f, err := os.Open(filepath.Join(dir, g.Path))
		if !g.Required && errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("index the bindings: %w", err)
		}
		items, err := Parse(bufio.NewReaderSize(f, 1<<20), g.Path, g.Crate)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("index the bindings: %w", err)
		}
		ix.Items = append(ix.Items, items...)
	}
	root := filepath.Join(dir, KernelDir)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".rs") {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		uses, err := ScanUses(f, filepath.ToSlash(rel))
		ix.Uses = append(ix.Uses, uses...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("index the kernel crate's uses of the bindings: %w", err)
	}
	ix.prepare()
	return ix, nil
}

// Write saves the index in its directory, atomically.
func (ix *Index) Write() error {
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(ix); err != nil {
		return fmt.Errorf("encode the bindings index: %w", err)
	}
	return ondisk.WriteFileAtomic(filepath.Join(ix.dir, IndexFile), b.Bytes(), 0o644)
}

// Load reads the index in dir; an error wrapping ErrNoIndex when there is none of this
// Version.
func Load(dir string) (*Index, error) {
	f, err := os.Open(filepath.Join(dir, IndexFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoIndex, dir)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ix Index
	if err := gob.NewDecoder(bufio.NewReaderSize(f, 1<<20)).Decode(&ix); err != nil {
		return nil, fmt.Errorf("read the bindings index %s: %w", f.Name(), err)
	}
	if ix.Version != Version {
		return nil, fmt.Errorf("%w of version %d in %s (this kmodvm reads version %d)", ErrNoIndex, ix.Version, dir, Version)
	}
	ix.dir = dir
	ix.prepare()
	return &ix, nil
}

func (ix *Index) prepare() {
	ix.byName = make(map[string][]int, len(ix.Items))
	for i, it := range ix.Items {
		ix.byName[it.Name] = append(ix.byName[it.Name], i)
		if it.Enumerator != "" {
			ix.byName[it.Enumerator] = append(ix.byName[it.Enumerator], i)
		}
	}
	ix.usedBy = map[string][]int{}
	for i, u := range ix.Uses {
		k := u.Crate + "::" + u.Name
		ix.usedBy[k] = append(ix.usedBy[k], i)
	}
}

// Dir is the directory the index and its files are in.
func (ix *Index) Dir() string { return ix.dir }

// Path is the path of a file of the index (an Item's or a Use's File).
func (ix *Index) Path(file string) string { return filepath.Join(ix.dir, filepath.FromSlash(file)) }

// Lookup returns the items named name (or whose C enumerator is name), in file order.
func (ix *Index) Lookup(name string) []Hit {
	var hits []Hit
	for _, i := range ix.byName[name] {
		hits = append(hits, ix.hit(i))
	}
	return hits
}

// Match returns the items whose name (or C enumerator) re matches, in file order.
func (ix *Index) Match(re *regexp.Regexp) []Hit {
	var hits []Hit
	for i, it := range ix.Items {
		if re.MatchString(it.Name) || (it.Enumerator != "" && re.MatchString(it.Enumerator)) {
			hits = append(hits, ix.hit(i))
		}
	}
	return hits
}

// All returns every item with its uses, in file order.
func (ix *Index) All() []Hit {
	hits := make([]Hit, len(ix.Items))
	for i := range ix.Items {
		hits[i] = ix.hit(i)
	}
	return hits
}

func (ix *Index) hit(i int) Hit {
	h := Hit{Item: ix.Items[i]}
	for _, u := range ix.usedBy[h.Crate+"::"+h.Name] {
		h.Uses = append(h.Uses, ix.Uses[u])
	}
	return h
}

// Names returns every item's name, sorted and without duplicates (for "did you mean").
func (ix *Index) Names() []string {
	names := make([]string, 0, len(ix.byName))
	for n := range ix.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
