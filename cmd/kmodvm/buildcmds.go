package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kmodvm/kmodvm/provision/kconfig"
	"github.com/kmodvm/kmodvm/provision/kernel"
	"github.com/kmodvm/kmodvm/provision/sandbox"
)

func (a *app) imageCmd() *cobra.Command {
	img := groupCmd("image", "Build the guest image / toolchain root")
	build := &cobra.Command{
		Use:   "build",
		Short: "Build (or find cached) the toolchain root and guest disk for the configured kernel",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start := time.Now()
			sb, err := a.offline()
			if err != nil {
				return err
			}
			art, err := sb.Prepare(cmd.Context())
			if err != nil {
				return err
			}
			a.prog.Done()
			if a.jsonOut {
				return a.printJSON(imageBuildJSON{Schema: schemaImageBuild, Root: art.Root.Dir, RootHash: art.Root.Hash,
					KernelRelease: art.Kernel.Release, KernelKey: art.Kernel.Key, Disk: art.Disk.Base, DiskKey: art.Disk.Key})
			}
			fmt.Fprintf(a.stdout, "root:   %s\nkernel: %s (%s)\ndisk:   %s\n(%s)\n", art.Root.Dir, art.Kernel.Release, art.Kernel.Dir, art.Disk.Base, since(start))
			return nil
		},
	}
	build.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	img.AddCommand(build)
	return img
}

// configReport is `kernel config --json`.
type configReport struct {
	Schema    string            `json:"schema"`
	Base      string            `json:"base"`
	Tree      string            `json:"tree"`
	OK        bool              `json:"ok"`
	Problems  []kconfig.Problem `json:"problems"`
	Changes   []kconfig.Change  `json:"changes"`
	Requested int               `json:"requested"`
	Hash      string            `json:"config_hash"`
}

func (a *app) kernelCmd() *cobra.Command {
	k := groupCmd("kernel", "Configure and build the sandbox kernel")
	cfg := &cobra.Command{
		Use:   "config",
		Short: "Show the final kernel config's difference from the base and verify it, without building",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kb, req, err := a.kernelBuilder(cmd.Context())
			if err != nil {
				return err
			}
			chk, err := kb.CheckConfig(cmd.Context(), req)
			if err != nil {
				return err
			}
			a.prog.Done()
			rep := configReport{
				Schema: schemaKernelConfig, Base: chk.Plan.Base, Tree: chk.Tree, OK: chk.Report.Err() == nil,
				Problems: chk.Report.Problems, Changes: chk.Changes,
				Requested: len(chk.Plan.Requested.Symbols()), Hash: chk.Final.Hash(),
			}
			if rep.Problems == nil {
				rep.Problems = []kconfig.Problem{}
			}
			if a.jsonOut {
				if err := a.printJSON(rep); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(a.stdout, "# base: %s; %d changes from the base:\n", rep.Base, len(rep.Changes))
				for _, c := range rep.Changes {
					fmt.Fprintf(a.stdout, "%-40s %s -> %s\n", "CONFIG_"+c.Symbol, orUnset(c.Old), orUnset(c.New))
				}
				if rep.OK {
					fmt.Fprintf(a.stdout, "# verified: all %d requested options have their requested values (config %s)\n", rep.Requested, shortID(rep.Hash))
				}
			}
			if err := chk.Report.Err(); err != nil {
				return withCode(exitUsage, err)
			}
			return nil
		},
	}
	cfg.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	build := &cobra.Command{
		Use:   "build",
		Short: "Build (or find cached) the Rust-enabled kernel",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start := time.Now()
			kb, req, err := a.kernelBuilder(cmd.Context())
			if err != nil {
				return err
			}
			res, err := kb.Build(cmd.Context(), req)
			if err != nil {
				return err
			}
			a.prog.Done()
			how := "built"
			if res.Cached {
				how = "cached"
			}
			if a.jsonOut {
				return a.printJSON(kernelBuildJSON{Schema: schemaKernelBuild, Result: res, Cached: res.Cached, Bzimage: res.Bzimage(), Vmlinux: res.Vmlinux(), KDir: res.KDir(), Log: res.Log()})
			}
			variant := ""
			if res.Debug {
				variant = " (debug)"
			}
			fmt.Fprintf(a.stdout, "kernel %s%s %s in %s\n  bzImage: %s\n", res.Release, variant, how, since(start), res.Bzimage())
			if res.Debug {
				fmt.Fprintf(a.stdout, "  vmlinux: %s\n", res.Vmlinux())
			}
			fmt.Fprintf(a.stdout, "  config:  %s (%s)\n  kdir:    %s\n  log:     %s\n",
				res.ConfigFile(), shortID(res.ConfigHash), res.KDir(), res.Log())
			var tc []string
			for _, k := range []string{"rustc", "bindgen", "clang"} {
				if v := res.Toolchain[k]; v != "" {
					tc = append(tc, v)
				}
			}
			if len(tc) > 0 {
				fmt.Fprintf(a.stdout, "  toolchain: %s\n", strings.Join(tc, "; "))
			}
			return nil
		},
	}
	build.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	k.AddCommand(cfg, build)
	return k
}

// groupCmd is a command that only holds subcommands: alone it prints its help; with an
// argument (a mistyped subcommand) it is a usage error, not a silent exit 0.
func groupCmd(use, short string) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
}

// kernelBuilder returns the builder of the image's toolchain root (built if needed) and
// the kernel request kmodvm.yaml makes.
func (a *app) kernelBuilder(ctx context.Context) (*kernel.Builder, kernel.Request, error) {
	opt, err := a.sandboxOptions()
	if err != nil {
		return nil, kernel.Request{}, err
	}
	kb, err := sandbox.New(nil, opt).KernelBuilder(ctx)
	return kb, opt.Kernel, err
}

func orUnset(v string) string {
	if v == "" || v == "n" {
		return "n"
	}
	return v
}
