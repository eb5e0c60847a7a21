// Package kdoc builds and keeps the documentation of a built kernel: rustdoc's HTML for the
// exact kernel a VM boots (its config, patches and bindings), and a searchable page of the
// raw bindings rustdoc hides, made from the kernel's bindings index (provision/bindindex).
// Both are built once and kept in the kernel's cache entry, under doc/, which appears whole
// or not at all.
package kdoc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kmodvm/kmodvm/images/ondisk"
	"github.com/kmodvm/kmodvm/provision/bindindex"
	"github.com/kmodvm/kmodvm/provision/kernel"
)

// In a kernel's cache entry, the documentation is doc/: index.html (the front page),
// bindings.html, rust/ (rustdoc's output: rust/kernel/index.html is the kernel crate),
// build.log and info.json.
const (
	dirName      = "doc"
	rustDir      = "rust"
	bindingsName = "bindings.html"
	infoName     = "info.json"
)

// Docs is a kernel's documentation.
type Docs struct {
	Dir       string        // doc/ in the kernel's cache entry
	BuildTime time.Duration // how long building it took
	Items     int           // the items on the bindings page
	Cached    bool          // built before, not now
}

// Index is the front page, linking the kernel crate and the bindings page.
func (d *Docs) Index() string { return filepath.Join(d.Dir, "index.html") }

// KernelCrate is rustdoc's page of the kernel crate.
func (d *Docs) KernelCrate() string { return filepath.Join(d.Dir, rustDir, "kernel", "index.html") }

// BindingsPage is the page of the raw bindings.
func (d *Docs) BindingsPage() string { return filepath.Join(d.Dir, bindingsName) }

// Log is the output of the make that built the documentation.
func (d *Docs) Log() string { return filepath.Join(d.Dir, ondisk.LogName) }

// info is info.json.
type info struct {
	BuildTime time.Duration `json:"build_time_ns"`
	Items     int           `json:"bindings_items"`
}

// Open returns the documentation kept with kernel k; nil when it has none yet.
func Open(k *kernel.Result) (*Docs, error) {
	dir := filepath.Join(k.Dir, dirName)
	data, err := os.ReadFile(filepath.Join(dir, infoName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var in info
	if err == nil {
		err = json.Unmarshal(data, &in)
	}
	if err != nil {
		return nil, fmt.Errorf("read the documentation of kernel %s: %w; hint: remove %s and run again to build it afresh", k.Release, err, dir)
	}
	return &Docs{Dir: dir, BuildTime: in.BuildTime, Items: in.Items, Cached: true}, nil
}

// Rustdoc writes the rustdoc HTML of a kernel into dst, a directory it creates, and make's
// output to log (kernel.Builder.Rustdoc does, for one kernel and its request).
type Rustdoc func(ctx context.Context, log io.Writer, dst string) error

// Build returns the documentation of kernel k, building it first when k has none: rustdoc
// (the long part), the bindings page from ix, k's bindings index, and the front page. It is
// built in a temporary directory of k's entry and renamed into place only when complete: a
// failed or interrupted build leaves no documentation (a failed one leaves its log, which
// the error names). Another kmodvm building the same documentation is waited for. log may
// be nil.
func Build(ctx context.Context, log *slog.Logger, k *kernel.Result, ix *bindindex.Index, rustdoc Rustdoc) (*Docs, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if d, err := Open(k); d != nil || err != nil {
		return d, err
	}
	dir, hit, err := ondisk.Entry(ctx, log, k.Dir, dirName, func(tmp, failedLog string) error {
		return build(ctx, k, ix, rustdoc, tmp, failedLog)
	})
	if err != nil {
		return nil, err
	}
	d, err := Open(k)
	if err == nil && d == nil {
		err = fmt.Errorf("the documentation of kernel %s is incomplete: %s has no %s; hint: remove %s and run again", k.Release, dir, infoName, dir)
	}
	if err != nil {
		return nil, err
	}
	d.Cached = hit
	return d, nil
}

// build fills tmp with the documentation.
func build(ctx context.Context, k *kernel.Result, ix *bindindex.Index, rustdoc Rustdoc, tmp, failedLog string) error {
	start := time.Now()
	logf, err := os.Create(filepath.Join(tmp, ondisk.LogName))
	if err != nil {
		return err
	}
	defer logf.Close()
	if err := rustdoc(ctx, logf, filepath.Join(tmp, rustDir)); err != nil {
		if ctx.Err() != nil || errors.Is(err, kernel.ErrOtherKernel) {
			return err
		}
		return fmt.Errorf("rustdoc for kernel %s: %w\nhint: the full log is %s", k.Release, err, failedLog)
	}
	if err := logf.Close(); err != nil {
		return err
	}
	kn := Kernel{Release: k.Release, Key: k.Key, Sources: k.BindingsDir()}
	rust := filepath.Join(tmp, rustDir)
	var page bytes.Buffer
	err = WriteBindings(&page, kn, ix, func(file string) string {
		rel := rustDir + "/src/" + strings.TrimPrefix(file, "rust/") + ".html" // rustdoc's source page of rust/kernel/...
		if _, err := os.Stat(filepath.Join(tmp, filepath.FromSlash(rel))); err != nil {
			return ""
		}
		return rel
	})
	if err != nil {
		return fmt.Errorf("write the bindings page: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, bindingsName), page.Bytes(), 0o644); err != nil {
		return err
	}
	in := info{BuildTime: time.Since(start), Items: len(ix.Items)}
	crates, err := documentedCrates(rust)
	if err != nil {
		return err
	}
	var front bytes.Buffer
	if err := WriteIndex(&front, Index{Kernel: kn, Crates: crates, Items: in.Items, BuildTime: in.BuildTime}); err != nil {
		return fmt.Errorf("write the documentation's front page: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "index.html"), front.Bytes(), 0o644); err != nil {
		return err
	}
	data, _ := json.MarshalIndent(in, "", "  ")
	return os.WriteFile(filepath.Join(tmp, infoName), data, 0o644)
}

// documentedCrates lists the crates in rustdoc's output dir (a directory with an
// index.html each), the kernel crate first.
func documentedCrates(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read rustdoc's output: %w", err)
	}
	crates := []string{"kernel"}
	for _, e := range ents {
		if e.IsDir() && e.Name() != "kernel" {
			if _, err := os.Stat(filepath.Join(dir, e.Name(), "index.html")); err == nil {
				crates = append(crates, e.Name())
			}
		}
	}
	slices.Sort(crates[1:])
	return crates, nil
}
