package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/kmodvm/kmodvm/images/ondisk"
)

// RustdocOutput is where the kernel's `make rustdoc` writes its HTML, relative to the build
// tree (rust/Makefile's rustdoc_output): a directory per crate (kernel/, core/, macros/,
// pin_init/, ...), their sources under src/, and static.files/.
const RustdocOutput = "Documentation/output/rust/rustdoc"

// ErrOtherKernel is returned (wrapped) by Rustdoc when the request no longer builds the
// kernel it is asked to document: kmodvm.yaml, the local source tree or the toolchain
// changed since that kernel was built.
var ErrOtherKernel = errors.New("the request builds another kernel")

// Rustdoc runs `make rustdoc` (after `make rust/`) for the built kernel k in its build tree
// and moves the HTML into dst, which must not exist. req must be the request k was built for: the tree gets
// exactly k's variant (req's patches and bindings applied, k's .config in place) for the
// run, and when req's plan is not k's key nothing runs (ErrOtherKernel). make's output goes
// to log. As a kernel build does, it holds the tree's lock, leaves the tree with the
// source's files (the variant taken out, rustdoc's output gone) and keeps the build outputs
// make wrote; a run that is stopped leaves the tree for the next one to clean up.
func (b *Builder) Rustdoc(ctx context.Context, req Request, k *Result, log io.Writer, dst string) error {
	start := time.Now()
	p, err := b.identify(ctx, req)
	if err != nil {
		return err
	}
	unlock, err := b.useTree(ctx, req, p)
	if err != nil {
		return err
	}
	defer unlock()
	if p.key != k.Key {
		return fmt.Errorf("%w: kernel %s has key %s, and the kernel kmodvm.yaml selects now has key %s; its documentation is built with the sources, config, patches and bindings it was built from", ErrOtherKernel, k.Release, k.Key, p.key)
	}
	restore, err := b.applyVariant(p)
	if err != nil {
		return err
	}
	defer restore()
	if err := useConfig(p.tree, k.ConfigFile()); err != nil {
		return err
	}
	out := filepath.Join(p.tree, RustdocOutput)
	defer b.removeRustdocOutput(p.tree)
	err = whileBuilding(p.tree, func() error {
		// rustdoc reads the metadata of the crates the kernel crate uses (uapi,
		// build_error, ...) and the files the kernel crate's build generates, which `make
		// rustdoc` does not remake: the tree may hold another variant's. Building rust/
		// first makes them this kernel's (nothing to do when the tree built it last).
		if err := b.makeDocs(ctx, p.tree, log, start, "rust/"); err != nil {
			return err
		}
		return b.makeDocs(ctx, p.tree, log, start, "rustdoc")
	})
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(out, "kernel", "index.html")); err != nil {
		return fmt.Errorf("make rustdoc wrote no documentation of the kernel crate (%s): %w", filepath.Join(out, "kernel", "index.html"), err)
	}
	b.report(Progress{Phase: "rustdoc", Current: "keeping the documentation in the kernel's cache entry", Elapsed: time.Since(start)})
	return moveTree(ctx, out, dst)
}

// useConfig puts the built kernel's .config (config, kept in its entry) in tree, unless the
// tree has it already: an unchanged .config keeps its mtime, so make redoes nothing for it.
func useConfig(tree, config string) error {
	want, err := os.ReadFile(config)
	if err != nil {
		return fmt.Errorf("read the kernel's config: %w", err)
	}
	dst := filepath.Join(tree, ".config")
	if have, err := os.ReadFile(dst); err == nil && bytes.Equal(have, want) {
		return nil
	}
	if err := ondisk.WriteFileAtomic(dst, want, 0o644); err != nil {
		return fmt.Errorf("put the kernel's config in its build tree: %w", err)
	}
	return nil
}

// makeDocs runs `make target` in the tree, teeing its output to log and reporting each
// crate rustdoc documents and, as build steps, what make rebuilds.
func (b *Builder) makeDocs(ctx context.Context, tree string, log io.Writer, start time.Time, target string) error {
	jobs := b.Jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	b.report(Progress{Phase: "rustdoc", Current: "make LLVM=1 " + target + " in the toolchain root", Elapsed: time.Since(start)})
	steps := 0
	var tail []string
	lines := &lineWriter{fn: func(line string) {
		tail = append(tail, line)
		if len(tail) > 40 {
			tail = tail[1:]
		}
		m := stepRe.FindStringSubmatch(line)
		switch {
		case m == nil:
		case strings.HasPrefix(m[1], "RUSTDOC"):
			b.report(Progress{Phase: "rustdoc", Current: m[1] + " " + m[2], Elapsed: time.Since(start)})
		default:
			steps++
			b.report(Progress{Phase: "build", Step: steps, Current: m[1] + " " + m[2], Elapsed: time.Since(start)})
		}
	}}
	err := b.makeTo(ctx, tree, nil, nil, io.MultiWriter(log, lines), fmt.Sprintf("-j%d", jobs), target)
	lines.flush()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("make %s interrupted: %w", target, ctx.Err())
		}
		return fmt.Errorf("make %s failed: %w; last lines:\n%s", target, err, indent(lastLines(strings.Join(tail, "\n"), 15)))
	}
	return nil
}

// lineWriter calls fn with each line written to it, without its newline.
type lineWriter struct {
	buf []byte
	fn  func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.fn(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

// flush passes on a last line without a newline.
func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.fn(string(w.buf))
		w.buf = nil
	}
}

// removeRustdocOutput takes what `make rustdoc` wrote under Documentation/ out of the tree,
// with the directories it made for it: the source has no Documentation/output.
func (b *Builder) removeRustdocOutput(tree string) {
	out := filepath.Join(tree, RustdocOutput)
	if err := os.RemoveAll(out); err != nil {
		b.logger().Warn("could not remove rustdoc's output from the kernel tree", "dir", out, "err", err)
	}
	for d := filepath.Dir(out); d != filepath.Join(tree, "Documentation"); d = filepath.Dir(d) {
		if os.Remove(d) != nil { // not empty: something else is there
			return
		}
	}
}

// moveTree moves the directory src to dst (which must not exist): a rename, or a copy when
// they are on different file systems.
func moveTree(ctx context.Context, src, dst string) error {
	err := os.Rename(src, dst)
	if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	if _, err := ondisk.CopyTree(ctx, src, dst, ondisk.CopyOptions{}); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return os.RemoveAll(src)
}
