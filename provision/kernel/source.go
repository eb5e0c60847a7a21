// Package kernel configures and builds the sandbox's Rust-enabled kernel in the image's
// toolchain root, caches the result, and stages what the guest needs: bzImage, modules and
// a trimmed build tree that out-of-tree Rust and C modules build against.
package kernel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/kmodvm/kmodvm/images/ondisk"
)

// Source kinds.
const (
	SourcePackage = "package" // the image suite's linux-source package
	SourceTree    = "tree"    // a local kernel tree (mainline, rust-next, ...)
	SourceTarball = "tarball" // a tarball by path or http(s) URL, with its sha256
)

// Source says where the kernel source comes from.
type Source struct {
	Kind   string
	Path   string // tree dir or tarball path (absolute); URL for a remote tarball
	SHA256 string // tarballs only
}

var sha256Re = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ParseSource turns kmodvm.yaml's kernel.source (and sha256) into a Source. Relative paths
// resolve against baseDir.
func ParseSource(spec, sum, baseDir string) (Source, error) {
	switch {
	case spec == "" || spec == SourcePackage:
		return Source{Kind: SourcePackage}, nil
	case strings.HasPrefix(spec, "http://") || strings.HasPrefix(spec, "https://"):
		return tarballSource(spec, sum)
	}
	p := spec
	if !filepath.IsAbs(p) {
		p = filepath.Join(baseDir, p)
	}
	st, err := os.Stat(p)
	if err != nil {
		return Source{}, fmt.Errorf("kernel source %q: %w; hint: set kernel.source in kmodvm.yaml to \"package\", a kernel tree or a tarball", spec, err)
	}
	if !st.IsDir() {
		return tarballSource(p, sum)
	}
	for _, f := range []string{"Makefile", "Kconfig", "arch/x86/Kconfig", "init/Kconfig"} {
		if _, err := os.Stat(filepath.Join(p, f)); err != nil {
			return Source{}, fmt.Errorf("kernel source %s is not a Linux kernel tree (no %s); hint: point kernel.source in kmodvm.yaml at the top of a kernel checkout", p, f)
		}
	}
	return Source{Kind: SourceTree, Path: p}, nil
}

func tarballSource(p, sum string) (Source, error) {
	sum = strings.ToLower(strings.TrimSpace(sum))
	if !sha256Re.MatchString(sum) {
		return Source{}, fmt.Errorf("kernel source %s is a tarball but kernel.sha256 is missing or not 64 hex digits; hint: add `sha256: <sha256sum of the tarball>` under kernel: in kmodvm.yaml", p)
	}
	return Source{Kind: SourceTarball, Path: p, SHA256: sum}, nil
}

// treeSlot names the build tree a source builds in: stable across edits of a local tree
// (so rebuilds are incremental), distinct per package/tarball and per toolchain root.
func (s Source) treeSlot(rootHash, pkgName string) string {
	var loc string
	switch s.Kind {
	case SourcePackage:
		loc = "package:" + pkgName
	case SourceTarball:
		loc = "tarball:" + s.SHA256
	default:
		loc = "tree:" + s.Path
	}
	return shortHash(rootHash, loc)
}

// packageSource finds the linux-source package inside the toolchain root.
func packageSource(ctx context.Context, root Root) (name, version, tarball string, err error) {
	var out strings.Builder
	cmd := root.Command(ctx, runOptions(nil, "", nil, &out, io.Discard),
		"dpkg-query", "-W", "-f", "${Package} ${Version}\\n", "linux-source-*")
	if err := cmd.Run(); err != nil {
		return "", "", "", fmt.Errorf("find linux-source in the toolchain root: %w; hint: the image must include linux-source", err)
	}
	var names []string
	vers := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[1] != "" {
			names = append(names, f[0])
			vers[f[0]] = f[1]
		}
	}
	if len(names) == 0 {
		return "", "", "", errors.New("no linux-source package is installed in the toolchain root; hint: add linux-source to image.packages or set kernel.source in kmodvm.yaml")
	}
	sort.Strings(names)
	name = names[len(names)-1]
	return name, vers[name], "/usr/src/" + name + ".tar.xz", nil
}

// fetchTarball makes sure a verified copy of the tarball is in the download cache and
// returns its path there. A checksum mismatch is an error and leaves nothing cached.
func fetchTarball(ctx context.Context, s Source, downloads string) (string, error) {
	ext := ".tar"
	for _, e := range []string{".tar.xz", ".tar.gz", ".tar.zst", ".tar.bz2", ".tgz", ".tar"} {
		if strings.HasSuffix(s.Path, e) {
			ext = e
			break
		}
	}
	dst := filepath.Join(downloads, s.SHA256+ext)
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(downloads, 0o755); err != nil {
		return "", err
	}
	var in io.ReadCloser
	if strings.HasPrefix(s.Path, "http://") || strings.HasPrefix(s.Path, "https://") {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Path, nil)
		if err != nil {
			return "", err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", fmt.Errorf("download kernel tarball %s: %w", s.Path, err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return "", fmt.Errorf("download kernel tarball %s: %s", s.Path, resp.Status)
		}
		in = resp.Body
	} else {
		f, err := os.Open(s.Path)
		if err != nil {
			return "", fmt.Errorf("open kernel tarball: %w", err)
		}
		in = f
	}
	defer in.Close()
	tmp, err := os.CreateTemp(downloads, ".download-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), in); err != nil {
		tmp.Close()
		return "", fmt.Errorf("copy kernel tarball %s: %w", s.Path, err)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != s.SHA256 {
		return "", fmt.Errorf("kernel tarball %s has sha256 %s, but kmodvm.yaml says %s; nothing was cached; hint: check the download or fix kernel.sha256 in kmodvm.yaml", s.Path, got, s.SHA256)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", err
	}
	return dst, nil
}

// treeIdentity identifies the content of a local kernel tree. In a git checkout: git
// describe, the diff of tracked files against HEAD, and the path, size and mtime of every
// untracked file git does not ignore (a new driver not yet added) — git's index tells what
// changed without reading the whole tree. Outside git: every file's path, size and mtime.
func treeIdentity(ctx context.Context, dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
		if id, err := gitIdentity(ctx, dir); err == nil {
			return id, nil
		}
	}
	h := sha256.New()
	err := walkSource(dir, func(rel string, fi os.FileInfo) error {
		fmt.Fprintf(h, "%s %d %d\n", rel, fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash kernel tree %s: %w", dir, err)
	}
	return "files:" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

func gitIdentity(ctx context.Context, dir string) (string, error) {
	git := func(args ...string) ([]byte, error) {
		return exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...).Output()
	}
	desc, err := git("describe", "--always", "--tags", "--dirty")
	if err != nil {
		return "", err
	}
	diff, err := git("diff", "HEAD", "--binary")
	if err != nil {
		return "", err
	}
	untracked, err := git("ls-files", "--others", "--exclude-standard", "-z")
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(diff)
	for _, rel := range strings.Split(string(untracked), "\x00") {
		if rel == "" {
			continue
		}
		fi, err := os.Lstat(filepath.Join(dir, rel))
		if err != nil {
			continue // removed meanwhile
		}
		fmt.Fprintf(h, "\x00untracked %s %d %d", rel, fi.Size(), fi.ModTime().UnixNano())
	}
	return "git:" + strings.TrimSpace(string(desc)) + ":" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// walkSource calls fn for every regular file of a kernel source tree, skipping .git and
// build outputs, in lexical order.
func walkSource(dir string, fn func(rel string, fi os.FileInfo) error) error {
	return filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if fi.IsDir() {
			if fi.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		if !fi.Mode().IsRegular() || isBuildOutput(fi.Name()) {
			return nil
		}
		return fn(rel, fi)
	})
}

func isBuildOutput(name string) bool {
	for _, suf := range []string{".o", ".ko", ".a", ".cmd", ".mod", ".rmeta", ".so", ".order", ".symvers", ".d"} {
		if strings.HasSuffix(name, suf) {
			return true
		}
	}
	return name == ".config" || name == ".config.old" || strings.HasPrefix(name, ".tmp")
}

// sourcesManifest, in a build tree, lists the source files it was filled with (one path
// relative to the tree per line): everything else in it is a build output.
const sourcesManifest = ".kmodvm-mirror"

// mirrorTree copies a local kernel tree into the private build tree: only files whose size,
// mode or mtime changed are copied (mtimes kept, so make rebuilds only what changed); files
// that were copied before and are gone from the source are removed. Build outputs in the
// build tree are never touched.
func mirrorTree(ctx context.Context, src, dst string) error {
	old := readManifest(dst)
	now, err := ondisk.CopyTree(ctx, src, dst, ondisk.CopyOptions{
		SkipUnchanged: true,
		Skip: func(rel string, d fs.DirEntry) bool {
			if d.IsDir() {
				return d.Name() == ".git"
			}
			return isBuildOutput(d.Name())
		},
	})
	if err != nil {
		return fmt.Errorf("copy kernel tree: %w", err)
	}
	for _, rel := range now {
		delete(old, rel)
	}
	for rel := range old {
		if err := os.Remove(filepath.Join(dst, rel)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return writeManifest(dst, now)
}

func readManifest(tree string) map[string]bool {
	m := map[string]bool{}
	data, err := os.ReadFile(filepath.Join(tree, sourcesManifest))
	if err != nil {
		return m
	}
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" {
			m[l] = true
		}
	}
	return m
}

func writeManifest(tree string, rels []string) error {
	return ondisk.WriteFileAtomic(filepath.Join(tree, sourcesManifest), []byte(strings.Join(rels, "\n")+"\n"), 0o644)
}

// shortHash is the first 16 hex digits of the sha256 of its parts joined by NULs.
func shortHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		io.WriteString(h, p)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
