package rustproject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kmodvm/kmodvm/provision/kernel"
)

// Places say where on this host the paths the generator printed in the root are.
type Places struct {
	RootDir string // the toolchain root the generator ran in (images.Root.Dir)
	KDir    string // the kernel's staged build tree (kernel.Result.KDir): the proc-macro libraries
	RustSrc string // the kernel's Rust sources, in tree layout (kernel.Result.RustSrcDir)
	Sysroot string // the sysroot HostSysroot made for the root
	Module  string // the module's directory, where the file goes
}

// Project is a rust-project.json for this host.
type Project struct {
	Data       []byte   // the file
	Crates     int      // the crates it lists (the sysroot's are rust-analyzer's own)
	Modules    []string // the module's crates, by name
	Sysroot    string   // the host sysroot (HostSysroot)
	SysrootSrc string   // the sources of core, alloc and std: the root's rust-src
}

// Rewrite turns the generator's output (paths of the root) into a Project for this host;
// the generator's other fields (cfg, env, edition, deps, is_proc_macro...) are kept as
// they are. Where each path goes:
//
//   - a Rust source (root_module, source.include_dirs and exclude_dirs, an env path such as
//     OBJTREE, which include!s the generated bindings) of the kernel tree: into RustSrc;
//   - a built file of the kernel tree (proc_macro_dylib_path): into KDir;
//   - a path of the module (under its mount point, or relative): into Module;
//   - any other absolute path: into the root (RootDir).
//
// The generator lists the sysroot's crates (core, alloc, std, proc_macro) as crates of
// their own and names the sysroot too; rust-analyzer then loads the sysroot's as well and
// sees two of each, and every type it infers across them is wrong ("(): Sized is not
// satisfied"). Rewrite drops the generator's (and the dependencies on them): rust-analyzer
// adds the sysroot's to every crate. The sysroot becomes Places.Sysroot, whose
// proc-macro server and rustc run on this host, and sysroot_src the root's rust-src.
//
// Every path written must exist; none of the root's kernel or module paths may be left.
func Rewrite(raw []byte, pl Places) (*Project, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("read the %s the kernel's generator wrote: %w", FileName, err)
	}
	m := &mapper{Places: pl}
	libInRoot, err := sysrootSrc(doc)
	if err != nil {
		return nil, err
	}
	crates, err := crateList(doc)
	if err != nil {
		return nil, err
	}
	crates, err = dropCrates(crates, func(c map[string]any) bool {
		_, ok := under(str(c, "root_module"), libInRoot)
		return ok
	})
	if err != nil {
		return nil, err
	}
	p := &Project{Crates: len(crates), Sysroot: pl.Sysroot, SysrootSrc: m.inRoot(libInRoot)}
	for i, c := range crates {
		if err := m.crate(c); err != nil {
			return nil, fmt.Errorf("crate %d (%s) of the generated %s: %w", i, str(c, "display_name"), FileName, err)
		}
		if _, ok := under(str(c, "root_module"), pl.Module); ok {
			p.Modules = append(p.Modules, str(c, "display_name"))
		}
	}
	doc["crates"] = crates
	doc["sysroot"] = pl.Sysroot
	doc["sysroot_src"] = p.SysrootSrc
	m.paths = append(m.paths, pl.Sysroot, p.SysrootSrc)
	if err := m.check(doc); err != nil {
		return nil, err
	}
	if len(p.Modules) == 0 {
		return nil, fmt.Errorf("%s has no Rust crate for the kernel's generator: no .rs file whose name its Kbuild or Makefile lists as NAME.o (obj-m := NAME.o); hint: kmodvm ide is for Rust modules; a C module's editor wants compile_commands.json", pl.Module)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "    ") // as the kernel's generator writes it
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	p.Data = buf.Bytes()
	return p, nil
}

// sysrootSrc is where the generator's sysroot crates are in the root: sysroot_src when it
// names it (older kernels name only that), else the rust-src of the sysroot it names.
func sysrootSrc(doc map[string]any) (string, error) {
	if s, ok := doc["sysroot_src"].(string); ok {
		return s, nil
	}
	if s, ok := doc["sysroot"].(string); ok {
		return path.Join(s, "lib/rustlib/src/rust/library"), nil
	}
	return "", fmt.Errorf("the %s the kernel's generator wrote names no sysroot (neither sysroot nor sysroot_src)", FileName)
}

func crateList(doc map[string]any) ([]map[string]any, error) {
	list, ok := doc["crates"].([]any)
	if !ok {
		return nil, fmt.Errorf("the %s the kernel's generator wrote has no list of crates", FileName)
	}
	crates := make([]map[string]any, len(list))
	for i, c := range list {
		if crates[i], ok = c.(map[string]any); !ok {
			return nil, fmt.Errorf("crate %d of the generated %s is not an object", i, FileName)
		}
	}
	return crates, nil
}

// dropCrates removes the crates drop selects and the dependencies on them, and renumbers
// the others' dependencies.
func dropCrates(crates []map[string]any, drop func(map[string]any) bool) ([]map[string]any, error) {
	index := make([]int, len(crates)) // old index -> new, -1 when dropped
	var kept []map[string]any
	for i, c := range crates {
		index[i] = -1
		if !drop(c) {
			index[i] = len(kept)
			kept = append(kept, c)
		}
	}
	for _, c := range kept {
		deps, _ := c["deps"].([]any)
		var out []any
		for _, d := range deps {
			dep, _ := d.(map[string]any)
			n, ok := dep["crate"].(json.Number)
			i, err := n.Int64()
			if !ok || err != nil || i < 0 || int(i) >= len(crates) {
				return nil, fmt.Errorf("crate %s of the generated %s has a dependency %v that names no crate", str(c, "display_name"), FileName, d)
			}
			if index[i] >= 0 {
				dep["crate"] = index[i]
				out = append(out, dep)
			}
		}
		if deps != nil {
			c["deps"] = append([]any{}, out...)
		}
	}
	return kept, nil
}

type mapper struct {
	Places
	paths []string // the host paths written, which must exist
}

// crate rewrites a crate's paths.
func (m *mapper) crate(c map[string]any) error {
	root, ok := c["root_module"].(string)
	if !ok {
		return fmt.Errorf("no root_module")
	}
	c["root_module"] = m.source(root)
	if lib, ok := c["proc_macro_dylib_path"].(string); ok {
		c["proc_macro_dylib_path"] = m.built(lib)
	}
	if src, ok := c["source"].(map[string]any); ok {
		for _, k := range []string{"include_dirs", "exclude_dirs"} {
			dirs, _ := src[k].([]any)
			for i, d := range dirs {
				if s, ok := d.(string); ok {
					dirs[i] = m.source(s)
				}
			}
		}
	}
	env, _ := c["env"].(map[string]any)
	for k, v := range env {
		if s, ok := v.(string); ok && m.rootPath(s) {
			env[k] = m.source(s)
		}
	}
	return nil
}

// source maps a Rust source, or a directory of them.
func (m *mapper) source(p string) string { return m.keep(m.host(p, m.RustSrc)) }

// built maps a file the kernel's build made.
func (m *mapper) built(p string) string { return m.keep(m.host(p, m.KDir)) }

func (m *mapper) keep(p string) string {
	m.paths = append(m.paths, p)
	return p
}

// host maps p: under the kernel tree into kernelDir, of the module into Module, any other
// absolute path into the root.
func (m *mapper) host(p, kernelDir string) string {
	if rel, ok := under(p, kernel.GuestTree); ok {
		return filepath.Join(kernelDir, rel)
	}
	if rel, ok := under(p, moduleMount); ok {
		return filepath.Join(m.Module, rel)
	}
	if !path.IsAbs(p) {
		return filepath.Join(m.Module, p)
	}
	return m.inRoot(p)
}

func (m *mapper) inRoot(p string) string { return filepath.Join(m.RootDir, p) }

// rootPath says whether s is a path of the kernel tree or of the module in the root.
func (m *mapper) rootPath(s string) bool {
	_, inKernel := under(s, kernel.GuestTree)
	_, inModule := under(s, moduleMount)
	return inKernel || inModule
}

// check fails when a path written does not exist on this host, or when a path of the
// root's kernel tree or module is left in doc (a field Rewrite does not know).
func (m *mapper) check(doc map[string]any) error {
	var missing []string
	for _, p := range m.paths {
		if _, err := os.Stat(p); err != nil && !slices.Contains(missing, p) {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		if len(missing) > 5 {
			missing = append(missing[:5], fmt.Sprintf("and %d more", len(missing)-5))
		}
		return fmt.Errorf("the %s for this host would name paths that do not exist: %s; hint: the kernel's cache entry or the toolchain root is incomplete: rebuild the kernel (remove its entry, then kmodvm kernel build)",
			FileName, strings.Join(missing, ", "))
	}
	var left []string
	walkStrings(doc, func(s string) {
		if m.rootPath(s) && !slices.Contains(left, s) {
			left = append(left, s)
		}
	})
	if len(left) > 0 {
		return fmt.Errorf("the kernel's generator wrote paths in fields kmodvm ide does not map to this host: %s", strings.Join(left, ", "))
	}
	return nil
}

func walkStrings(v any, f func(string)) {
	switch v := v.(type) {
	case string:
		f(v)
	case []any:
		for _, e := range v {
			walkStrings(e, f)
		}
	case map[string]any:
		for _, e := range v {
			walkStrings(e, f)
		}
	}
}

// under returns p relative to dir ("." for dir itself) when p is dir or below it.
func under(p, dir string) (string, bool) {
	if p == dir {
		return ".", true
	}
	return strings.CutPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// str is c[key] when it is a string.
func str(c map[string]any, key string) string {
	s, _ := c[key].(string)
	return s
}
