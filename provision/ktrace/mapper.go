package ktrace

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Mapper points the source paths a guest kernel prints, and the ones in
// the debug information of its objects, at files on the host.
type Mapper struct {
	// GuestModuleDir is where the module was built (and lives) in the guest.
	GuestModuleDir string
	// HostModuleDir is the module's directory on the host.
	HostModuleDir string
	// GuestKernelDir is where the kernel was built: the absolute paths in
	// vmlinux's debug information start with it. kmodvm builds the kernel
	// at the path the guest has it at, /usr/src/kmodvm/linux.
	GuestKernelDir string
	// KernelSrc is the kernel source tree on the host.
	KernelSrc string
	// ToolchainRoot is the toolchain root on the host, which the kernel and
	// the module were built in: the files of its /usr that debug information
	// names (Rust's core and alloc sources under /usr/lib/rustlib, C headers)
	// are there.
	ToolchainRoot string
	// KernelExtra are more host directories that hold the kernel's files at their paths in
	// its tree, tried after KernelSrc: the sources a cache entry keeps next to its staged
	// build tree, the tree it was built in.
	KernelExtra []string
	// Modules maps more modules' directories in the guest to theirs on the host, for
	// absolute paths: a log holds the traces of every module loaded, not only this one's.
	Modules map[string]string
}

// Map returns the host file a printed path names, and false when there is
// none: only paths that exist on the host are given. A relative path is
// tried against the module directory first (kbuild prints a module's files
// relative to it), then against the kernel tree ("rust/helpers/bug.c").
func (m Mapper) Map(path string) (string, bool) {
	if path == "" {
		return "", false
	}
	var candidates []string
	if filepath.IsAbs(path) {
		if rel, ok := under(path, m.GuestModuleDir); ok && m.HostModuleDir != "" {
			candidates = append(candidates, filepath.Join(m.HostModuleDir, rel))
		}
		for guest, host := range m.Modules {
			if rel, ok := under(path, guest); ok {
				candidates = append(candidates, filepath.Join(host, rel))
			}
		}
		if rel, ok := under(path, m.GuestKernelDir); ok {
			candidates = append(candidates, m.inKernel(rel)...)
		} else if rel, ok := under(path, "/usr"); ok && m.ToolchainRoot != "" {
			candidates = append(candidates, filepath.Join(m.ToolchainRoot, "usr", rel))
		}
	} else {
		if m.HostModuleDir != "" {
			candidates = append(candidates, filepath.Join(m.HostModuleDir, path))
		}
		candidates = append(candidates, m.inKernel(path)...)
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			return c, true
		}
	}
	return "", false
}

// inModuleSources says whether the host file is in a module's own directory: this
// module's or another one's of Modules.
func (m Mapper) inModuleSources(host string) bool {
	if _, ok := under(host, m.HostModuleDir); ok {
		return true
	}
	for _, dir := range m.Modules {
		if _, ok := under(host, dir); ok {
			return true
		}
	}
	return false
}

// inKernel lists where the kernel's file at rel (relative to its tree) may be on the host.
func (m Mapper) inKernel(rel string) []string {
	var out []string
	for _, dir := range append([]string{m.KernelSrc}, m.KernelExtra...) {
		if dir != "" {
			out = append(out, filepath.Join(dir, rel))
		}
	}
	return out
}

// under returns path relative to dir when path lies inside it.
func under(path, dir string) (string, bool) {
	if dir == "" {
		return "", false
	}
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(path))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || rel == "." {
		return "", false
	}
	return rel, true
}

// pathRE finds a source path followed by ":line" where diagnostics put
// one: at the start of a line (C compilers), after rustc's "--> " and "::: "
// (a span in another file), after " from " (C's "In file included from"), or
// after " at " (KUnit's "FAILED at", Rust's "panicked at", "kernel BUG at").
var pathRE = regexp.MustCompile(`(?m)(^|--> |::: | from | at )(/?[A-Za-z0-9_.][A-Za-z0-9_./-]*\.(?:rs|c|h|S)):(\d+)`)

// MapText rewrites the source paths in compiler or kernel text (see
// pathRE) to the host files they name, leaving the ones Map cannot place.
func (m Mapper) MapText(text string) string {
	return pathRE.ReplaceAllStringFunc(text, func(s string) string {
		sub := pathRE.FindStringSubmatch(s)
		host, ok := m.Map(sub[2])
		if !ok {
			return s
		}
		return sub[1] + host + ":" + sub[3]
	})
}
