package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/provision/rustproject"
)

// ideJSON is `ide --json`: the rust-project.json written.
type ideJSON struct {
	Schema        string   `json:"schema"`
	Path          string   `json:"path"`
	Changed       bool     `json:"changed"`
	ModuleDir     string   `json:"module_dir"`
	ModuleCrates  []string `json:"module_crates"`
	Crates        int      `json:"crates"`
	VM            string   `json:"vm"` // "" when the kernel is kmodvm.yaml's, no VM's
	KernelRelease string   `json:"kernel_release"`
	KernelKey     string   `json:"kernel_key"`
	KernelRustSrc string   `json:"kernel_rust_src"`
	Sysroot       string   `json:"sysroot"`
	SysrootSrc    string   `json:"sysroot_src"`
}

func (a *app) ideCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "ide [DIR]",
		Short: "Write DIR/rust-project.json, so that your editor's rust-analyzer knows the module's kernel",
		Long: `Write rust-project.json in the module's directory DIR (default: kmodvm.yaml's
module.dir, else the current directory), with this host's paths, for the kernel the
module runs on: the one VM -n boots (default: kmodvm.yaml's name) when that VM
exists, else the one kmodvm.yaml selects, if it is built (ide builds nothing).

The kernel's own generator (make rust-analyzer) runs in the toolchain root; its paths
become this host's: the kernel crates' sources kept in the kernel's cache entry, its
proc-macro libraries, the toolchain root's rust-src, and a sysroot kmodvm makes in its
cache whose rustc and proc-macro server run on this host. The kernel's config becomes
the crates' cfgs, as in its build.

rust-analyzer finds the file when the editor opens DIR; else point it at the file with
rust-analyzer.linkedProjects. Run ide again when the module gets a new crate or the
kernel changes. A rust-project.json that kmodvm did not write, or that was changed
since, is never replaced: ide stops and says so.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := ""
			if len(args) == 1 {
				dir = args[0]
			}
			return a.ide(cmd.Context(), dir)
		},
	}
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return c
}

func (a *app) ide(ctx context.Context, dir string) error {
	src, err := a.detectModule(dir)
	if err != nil {
		return err
	}
	k, vmName, err := a.bindingsKernel(ctx)
	if err != nil {
		return err
	}
	if _, err := os.Stat(k.RustSrcDir()); err != nil {
		return fmt.Errorf("kernel %s (%s) was built before kmodvm kept its Rust sources for editors; hint: `rm -rf %s && kmodvm kernel build` builds it again with them, with the kmodvm.yaml it was built from (make is incremental in the build tree kmodvm keeps; a VM booting it finds it at the same path)", k.Release, k.Dir, k.Dir)
	}
	root, err := a.ideRoot(vmName)
	if err != nil {
		return err
	}
	// The sysroot is made of the root's paths only: one per root.
	h := sha256.Sum256([]byte(root.Dir))
	sysroot := filepath.Join(a.paths.Cache, "ide", "sysroot-"+hex.EncodeToString(h[:8]))
	if err := rustproject.HostSysroot(ctx, root.Dir, sysroot); err != nil {
		return err
	}
	a.prog.Status("running the kernel's make rust-analyzer for " + src.Dir + " in the toolchain root")
	raw, err := rustproject.Generate(ctx, root, k.KDir(), src.Dir)
	if err != nil {
		return err
	}
	p, err := rustproject.Rewrite(raw, rustproject.Places{RootDir: root.Dir, KDir: k.KDir(), RustSrc: k.RustSrcDir(), Sysroot: sysroot, Module: src.Dir})
	if err != nil {
		return err
	}
	path := filepath.Join(src.Dir, rustproject.FileName)
	changed, err := rustproject.Write(path, p.Data, filepath.Join(a.paths.State, "ide"))
	if err != nil {
		return err
	}
	out := ideJSON{Schema: schemaIDE, Path: path, Changed: changed, ModuleDir: src.Dir, ModuleCrates: p.Modules, Crates: p.Crates,
		VM: vmName, KernelRelease: k.Release, KernelKey: k.Key, KernelRustSrc: k.RustSrcDir(), Sysroot: p.Sysroot, SysrootSrc: p.SysrootSrc}
	if a.jsonOut {
		return a.printJSON(out)
	}
	printIDE(a, out)
	return nil
}

// ideRoot is the toolchain root of the kernel `ide` writes for: the VM's, else the one
// kmodvm.yaml selects (the kernel's cache key holds the root's tool versions: kmodvm.yaml's
// kernel, when built, was built with them).
func (a *app) ideRoot(vmName string) (*images.Root, error) {
	sb, err := a.offline()
	if err != nil {
		return nil, err
	}
	if vmName == "" {
		return sb.BuiltRoot()
	}
	in, err := sb.Instance(vmName)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(in.RootDir); err != nil {
		return nil, fmt.Errorf("the toolchain root VM %s was made with is gone (%w); hint: `kmodvm destroy -n %s && kmodvm up -n %s` makes the VM again with the current one", in.Name, err, in.Name, in.Name)
	}
	return &images.Root{Dir: in.RootDir, Hash: in.RootHash}, nil
}

func printIDE(a *app, out ideJSON) {
	did := "wrote"
	if !out.Changed {
		did = "up to date:"
	}
	fmt.Fprintf(a.stdout, "%s %s\n  crate %s on kernel %s, with %d kernel and module crates\n", did, out.Path, strings.Join(out.ModuleCrates, ", "), out.KernelRelease, out.Crates)
	quoted, _ := json.Marshal(out.Path) // a JSON string is a Lua string too
	fmt.Fprintf(a.stdout, `rust-analyzer reads it when your editor opens %s; opened elsewhere, point it at the file:
  VS Code, settings.json:  "rust-analyzer.linkedProjects": [%s]
  Neovim, lspconfig:       settings = { ["rust-analyzer"] = { linkedProjects = { %s } } }
Its paths are this host's: keep it out of version control.
`, out.ModuleDir, quoted, quoted)
}
