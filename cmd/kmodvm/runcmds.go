package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kmodvm/kmodvm/cmd/kmodvm/config"
	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/provision/sandbox"
	"github.com/kmodvm/kmodvm/vm"
)

// detectModule finds the module in the argument's directory, else kmodvm.yaml's
// module.dir; a directory that holds no module is a usage error.
func (a *app) detectModule(args []string) (module.Source, error) {
	dir := a.cfg.Module.Dir
	if len(args) > 0 {
		dir = args[0]
	}
	src, err := module.Detect(dir)
	if err != nil {
		return module.Source{}, withCode(exitUsage, err)
	}
	return src, nil
}

func (a *app) runCmd() *cobra.Command {
	var (
		params []string
		where  string
		keep   bool
		reload int
		tmo    time.Duration
	)
	c := &cobra.Command{
		Use:   "run [DIR]",
		Short: "Sync, build, load and judge a module in the guest; exit code is the verdict",
		Long: `Sync the module directory into the guest, build it against the booted kernel,
insmod it, read exactly the kernel log lines the load produced, judge them, rmmod it
and judge again. A module that crashes or hangs the guest is reported with the trace
from the console log, and the guest is restarted.

` + exitCodesHelp(),
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			src, err := a.detectModule(args)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("param") {
				params = a.cfg.Module.Params
			}
			if err := checkParams(params); err != nil {
				return withCode(exitUsage, err)
			}
			if !cmd.Flags().Changed("build") {
				where = a.cfg.Module.Build
			}
			if err := checkBuildWhere(where); err != nil {
				return withCode(exitUsage, err) // before connecting: a typo is not a libvirt problem
			}
			if !cmd.Flags().Changed("timeout") {
				tmo = a.cfg.Module.Timeout
			}
			return a.withSandbox(ctx, func(sb *sandbox.Sandbox) error {
				in, err := sb.Instance(a.vmName())
				if err != nil {
					return err
				}
				unlock, err := sb.Lock(ctx, in)
				if err != nil {
					return err
				}
				defer unlock()
				w, err := buildLocation(where, in.Accel)
				if err != nil {
					return withCode(exitUsage, err)
				}
				r := &module.Runner{
					Connect: func(ctx context.Context) (module.Guest, error) {
						return sb.Guest(ctx, in.Name)
					},
					Toolchain: &images.Root{Dir: in.RootDir, Hash: in.RootHash},
					KDir:      in.KDir,
				}
				defer r.Close()
				res, err := r.Run(ctx, module.Options{
					Source: src, Params: params, Where: w, Keep: keep, Reload: reload, Timeout: tmo,
					BuildDir: in.HostBuildDir(filepath.Base(module.RemoteDir(src.Dir))),
					Status:   a.prog.Status,
				})
				if err != nil {
					return err
				}
				if a.jsonOut {
					if err := a.printJSON(runJSON{Result: res, KernelRelease: in.KernelRelease, ConfigHash: in.ConfigHash, Toolchain: in.Toolchain, ExitCode: verdictExitCode(res.Verdict)}); err != nil {
						return err
					}
				} else {
					printRun(a, res)
				}
				if code := verdictExitCode(res.Verdict); code != exitOK {
					return silentExit(code)
				}
				return nil
			})
		},
	}
	f := c.Flags()
	f.StringArrayVarP(&params, "param", "p", nil, "module parameter name=value (repeatable; default: kmodvm.yaml module.params)")
	f.StringVar(&where, "build", module.BuildAuto, "where to build: auto (host under TCG, guest under KVM), guest or host")
	f.BoolVar(&keep, "keep", false, "leave the module loaded")
	f.IntVar(&reload, "reload", 1, "load/unload cycles")
	f.DurationVar(&tmo, "timeout", 0, "how long a load or unload may take before the guest is judged hung (default: kmodvm.yaml module.timeout, 2m)")
	f.BoolVar(&a.jsonOut, "json", false, "print one JSON object with the whole result")
	return c
}

// runJSON is `run --json`.
type runJSON struct {
	*module.Result
	KernelRelease string            `json:"kernel_release"`
	ConfigHash    string            `json:"config_hash"`
	Toolchain     map[string]string `json:"toolchain"`
	ExitCode      int               `json:"exit_code"`
}

func buildLocation(where string, accel vm.Accel) (string, error) {
	if err := checkBuildWhere(where); err != nil {
		return "", err
	}
	if where == "" || where == module.BuildAuto {
		if accel == vm.AccelKVM {
			return module.BuildGuest, nil
		}
		return module.BuildHost, nil
	}
	return where, nil
}

// checkBuildWhere rejects a --build value other than auto, guest or host.
func checkBuildWhere(where string) error {
	switch where {
	case "", module.BuildAuto, module.BuildGuest, module.BuildHost:
		return nil
	}
	return fmt.Errorf("--build %q is not one of auto, guest, host; hint: `kmodvm run --build host DIR` builds in the toolchain root on this machine, `--build guest` in the VM", where)
}

// checkParams applies kmodvm.yaml's rules for module.params to -p values, then checks that
// the kernel can be given each value exactly.
func checkParams(params []string) error {
	c := config.Default()
	for _, p := range params {
		c.Module.Params = []string{p}
		if err := c.Validate(); err != nil {
			msg := strings.TrimPrefix(err.Error(), "module.params[0]: ")
			return fmt.Errorf("module parameter %q: %s; hint: pass -p name=value, e.g. -p debug=1", p, msg)
		}
		if _, err := module.ParamWord(p); err != nil {
			return err
		}
	}
	return nil
}

// printRun prints the human report: the sync, the build, each step's kernel log, the verdict.
func printRun(a *app, res *module.Result) {
	out := a.stdout
	fmt.Fprintf(out, "sync:    %s\n", res.Sync.Summary)
	fmt.Fprintf(out, "build:   %s, %s (%.1f s)\n", res.Build.Where, map[bool]string{true: "ok", false: "FAILED"}[res.Build.OK], res.Build.Duration.Seconds())
	if !res.Build.OK {
		fmt.Fprintln(out, strings.TrimRight(res.Build.Output, "\n"))
	}
	for _, s := range res.Steps {
		state := "ok"
		if !s.OK {
			state = "FAILED: " + s.Error
		}
		fmt.Fprintf(out, "%s %s (#%d): %s (%.2f s)\n", s.Action, s.Module, s.Iteration, state, s.Duration.Seconds())
		for _, l := range s.Log {
			fmt.Fprintf(out, "  %s\n", l)
		}
		if s.Lost > 0 {
			fmt.Fprintf(out, "  !! %d kernel log records were overwritten in the guest (its log buffer was full) before kmodvm read them; the verdict did not see them\n", s.Lost)
		}
		for _, f := range s.Findings {
			fmt.Fprintf(out, "  !! %s: %s\n", f.Class, f.Title)
		}
	}
	if res.Restart {
		fmt.Fprintln(out, "guest:   restarted after the crash; it is ready for the next run")
	}
	fmt.Fprintf(out, "verdict: %s — %s\n", res.Verdict, res.Title)
}

func (a *app) syncCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "sync [DIR]",
		Short: "Sync a module directory into the guest (only what changed)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			src, err := a.detectModule(args)
			if err != nil {
				return err
			}
			return a.withLockedGuest(ctx, func(g *sandbox.Guest) error {
				a.prog.Status("syncing " + src.Dir + " to " + module.RemoteDir(src.Dir))
				sum, err := module.Sync(ctx, g.SSH(), src.Dir)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "%s -> %s: %s\n", src.Dir, module.RemoteDir(src.Dir), sum)
				return nil
			})
		},
	}
}
