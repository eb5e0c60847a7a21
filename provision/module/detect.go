// Package module is the module loop: build an out-of-tree module against the booted
// kernel (in the guest or in the identical toolchain root on the host), load it, read
// exactly the kernel log lines the load produced, judge them, unload, and survive a module
// that takes the guest down.
package module

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/kmodvm/kmodvm/provision/builddiag"
	"github.com/kmodvm/kmodvm/provision/ktrace"
	"github.com/kmodvm/kmodvm/provision/treesync"
)

// Source describes a module directory.
type Source struct {
	Dir     string   // absolute host path
	Modules []string // module names from obj-m, in order ("rust_hello")
}

var objMRe = regexp.MustCompile(`^\s*obj-(?:m|\$\([A-Za-z0-9_]+\))\s*[:+]?=\s*(.*)$`)

// Detect reads a module directory: it must have a Kbuild or Makefile naming obj-m.
func Detect(dir string) (Source, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Source{}, err
	}
	st, err := os.Stat(abs)
	if err != nil || !st.IsDir() {
		return Source{}, fmt.Errorf("module directory %s does not exist or is not a directory; hint: pass the directory that holds your module's Kbuild or Makefile, e.g. examples/rust-hello", dir)
	}
	src := Source{Dir: abs}
	var kbuild []byte
	for _, name := range []string{"Kbuild", "Makefile"} {
		if data, err := os.ReadFile(filepath.Join(abs, name)); err == nil {
			kbuild = append(kbuild, data...)
			kbuild = append(kbuild, '\n')
		}
	}
	if len(kbuild) == 0 {
		return Source{}, fmt.Errorf("module directory %s has no Kbuild or Makefile; hint: add a Kbuild file with `obj-m := mymodule.o` (see examples/rust-hello)", abs)
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(joinContinuations(kbuild)))
	for sc.Scan() {
		m := objMRe.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		for _, f := range strings.Fields(m[1]) {
			if !strings.HasSuffix(f, ".o") || strings.Contains(f, "/") {
				continue
			}
			name := strings.ReplaceAll(strings.TrimSuffix(f, ".o"), "-", "_")
			if !seen[name] {
				seen[name] = true
				src.Modules = append(src.Modules, name)
			}
		}
	}
	if len(src.Modules) == 0 {
		return Source{}, fmt.Errorf("the Kbuild/Makefile in %s names no module (no `obj-m := name.o` line); hint: add one", abs)
	}
	// What the sync would refuse (a symlink leading out of the tree, a bad .kmodvmignore)
	// is refused here, before anything connects or copies.
	if err := treesync.Check(context.Background(), abs, treesync.Options{}); err != nil {
		return Source{}, err
	}
	return src, nil
}

func joinContinuations(b []byte) []byte {
	return bytes.ReplaceAll(b, []byte("\\\n"), []byte(" "))
}

// RemoteDir is where a module directory lives in the guest (and where host builds run, so
// paths in the .ko and diagnostics are the same in both places).
func RemoteDir(hostDir string) string {
	h := sha256.Sum256([]byte(hostDir))
	base := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, filepath.Base(hostDir))
	if base == "" || base == "." || base == ".." {
		base = "module"
	}
	return "/root/kmodvm/src/" + base + "-" + hex.EncodeToString(h[:])[:8]
}

// RewritePaths maps the build location back to the host module directory in compiler
// output, so an editor can jump to the diagnostics: absolute build paths become host
// paths, and the paths kbuild's compilers print relative to the module directory
// ("--> hello.rs:3:5", "hello.c:3:5: error") become absolute host paths.
func RewritePaths(out, remoteDir, hostDir string) string {
	out = strings.ReplaceAll(out, remoteDir+"/", hostDir+"/")
	out = strings.ReplaceAll(out, remoteDir, hostDir)
	return hostRelPaths(out, hostDir)
}

// hostRelPaths points the source paths relative to the module dir that a diagnostic names
// at the module's files on the host, where they exist.
func hostRelPaths(out, hostDir string) string {
	return ktrace.Mapper{HostModuleDir: hostDir}.MapText(out)
}

// buildOutput makes a build's output readable on the host: the module's paths (m's module
// dirs) and the kernel's (m's kernel dirs) are pointed at host files, and a hint follows for
// each item the kernel's config leaves out (kdir: the kernel's staged build tree on the
// host, with its .config and Kconfig files).
func buildOutput(out string, m ktrace.Mapper, kdir string) (string, []builddiag.Hint) {
	out = m.MapText(RewritePaths(out, m.GuestModuleDir, m.HostModuleDir))
	hints := builddiag.Hints(out, m, kdir)
	for _, h := range hints {
		out = strings.TrimRight(out, "\n") + "\n" + h.Text + "\n"
	}
	return out, hints
}

// Kos lists the .ko files of a build directory's top level, sorted.
func kosIn(names []string) []string {
	var kos []string
	for _, n := range names {
		if strings.HasSuffix(n, ".ko") {
			kos = append(kos, n)
		}
	}
	sort.Strings(kos)
	return kos
}
