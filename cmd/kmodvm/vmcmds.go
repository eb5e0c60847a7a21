package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kmodvm/kmodvm/provision/sandbox"
	"github.com/kmodvm/kmodvm/vm/remedy"
	"github.com/kmodvm/kmodvm/vm/shellquote"
	"github.com/kmodvm/kmodvm/vm/sshclient"
)

func (a *app) upCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "up",
		Short: "Start the sandbox VM (builds image and kernel on first use)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := a.upVM(cmd.Context())
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(upJSON{Schema: schemaUp, Name: in.Name, KernelRelease: in.KernelRelease, ConfigHash: in.ConfigHash,
					KernelDebug: in.Vmlinux != "", Accel: string(in.Accel), SSHPort: in.SSHPort})
			}
			debug := ""
			if in.Vmlinux != "" {
				debug = " debug=" + in.Vmlinux
			}
			where := ""
			if in.Host != nil {
				where = " on " + a.cfg.VM.URI + " (ssh through the host)"
			}
			fmt.Fprintf(a.stdout, "%s running kernel=%s%s accel=%s ssh=127.0.0.1:%d%s\n", in.Name, in.KernelRelease, debug, in.Accel, in.SSHPort, where)
			return nil
		},
	}
	c.Flags().StringVar(&a.accel, "accel", "", "accelerator: auto, kvm or tcg (default: kmodvm.yaml vm.accel, else auto)")
	c.Flags().IntVar(&a.port, "port", 0, "host port on 127.0.0.1 for the guest's SSH (0: pick a free one)")
	c.Flags().BoolVar(&a.cold, "cold", false, "boot the guest instead of restoring a save (drops the VM's own saved state)")
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return c
}

// upVM makes the VM run with SSH ready, building what it boots from on first use; `up` and
// the up tool of `kmodvm mcp`.
func (a *app) upVM(ctx context.Context) (*sandbox.Instance, error) {
	var in *sandbox.Instance
	err := a.withSandbox(ctx, func(sb *sandbox.Sandbox) error {
		var err error
		in, err = a.startVM(ctx, sb)
		return err
	})
	return in, err
}

// vmStarter is what starting the VM needs of the sandbox.
type vmStarter interface {
	Running(ctx context.Context, name string) (bool, error)
	Up(ctx context.Context, name string) (*sandbox.Instance, *sshclient.Client, error)
}

// startVM is `up`'s work on a sandbox: the VM runs with SSH ready (created, with image and
// kernel built, on first use), its progress on stderr.
func (a *app) startVM(ctx context.Context, sb vmStarter) (*sandbox.Instance, error) {
	start := time.Now()
	in, c, err := sb.Up(ctx, a.vmName())
	if err != nil {
		return nil, err
	}
	c.Close()
	a.prog.Status(fmt.Sprintf("%s is up in %s: kernel %s (%s), ssh on 127.0.0.1:%d", in.Name, since(start), in.KernelRelease, in.Accel, in.SSHPort))
	return in, nil
}

// startIfDown starts the VM as `up` does when it does not exist or is not running: what
// run, test and watch do before they work in it, unless --no-up.
func (a *app) startIfDown(ctx context.Context, sb vmStarter) error {
	running, err := sb.Running(ctx, a.vmName())
	if err != nil || running {
		return err
	}
	a.prog.Status(fmt.Sprintf("VM %s is not running: starting it as `kmodvm up` does (--no-up fails instead)", a.vmName()))
	_, err = a.startVM(ctx, sb)
	return err
}

func (a *app) downCmd() *cobra.Command {
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "down",
		Short: "Stop the sandbox VM (its state saved, else a clean shutdown, then a hard stop after --timeout)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stopped, err := a.downVM(cmd.Context(), timeout)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(downJSON{Schema: schemaDown, Name: a.vmName(), Stopped: string(stopped)})
			}
			fmt.Fprintf(a.stdout, "%s stopped (%s)\n", a.vmName(), stoppedText[stopped])
			return nil
		},
	}
	c.Flags().DurationVar(&timeout, "timeout", defaultDownTimeout, "how long to wait for a clean shutdown")
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return c
}

// stoppedText says for people how down stopped the VM.
var stoppedText = map[sandbox.Stopped]string{
	sandbox.StoppedSaved:      "state saved: the next up resumes it",
	sandbox.StoppedShutdown:   "shut down",
	sandbox.StoppedHard:       "stopped hard: it did not shut down in time",
	sandbox.StoppedNotRunning: "it was not running",
}

// defaultDownTimeout is how long down waits for a clean shutdown before it stops the VM hard.
const defaultDownTimeout = 30 * time.Second

// downVM stops the VM: `down` and the down tool of `kmodvm mcp`.
func (a *app) downVM(ctx context.Context, timeout time.Duration) (sandbox.Stopped, error) {
	var stopped sandbox.Stopped
	err := a.withSandbox(ctx, func(sb *sandbox.Sandbox) error {
		var err error
		stopped, err = sb.Down(ctx, a.vmName(), timeout)
		return err
	})
	return stopped, err
}

func (a *app) destroyCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "destroy",
		Short: "Remove the sandbox VM: domain, disk overlay and state, crash bundles included (caches are kept)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withSandbox(cmd.Context(), func(sb *sandbox.Sandbox) error {
				if err := sb.Destroy(cmd.Context(), a.vmName()); err != nil {
					return err
				}
				if a.jsonOut {
					return a.printJSON(destroyJSON{Schema: schemaDestroy, Name: a.vmName(), StateDir: sb.StateDir(a.vmName())})
				}
				fmt.Fprintf(a.stdout, "%s destroyed\n", a.vmName())
				return nil
			})
		},
	}
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return c
}

func (a *app) statusCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the VM's state, accel, kernel, SSH port and uptime",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := a.vmStatus(cmd.Context())
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(statusJSON{Schema: schemaStatus, Status: st})
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "name:\t%s\n", st.Name)
			fmt.Fprintf(tw, "state:\t%s\n", st.State)
			fmt.Fprintf(tw, "accel:\t%s\n", st.Accel)
			debug := ""
			if st.KernelDebug {
				debug = ", debug variant"
			}
			fmt.Fprintf(tw, "kernel:\t%s (config %s%s)\n", st.KernelRelease, shortID(st.ConfigHash), debug)
			if st.SSHPort != 0 {
				fmt.Fprintf(tw, "ssh:\t127.0.0.1:%d\n", st.SSHPort)
			}
			if st.Uptime != "" {
				fmt.Fprintf(tw, "uptime:\t%s\n", st.Uptime)
			}
			if st.RestoredFrom != "" {
				fmt.Fprintf(tw, "restored from:\t%s save\n", strings.TrimSuffix(st.RestoredFrom, " save"))
			}
			if st.SaveBytes != 0 {
				fmt.Fprintf(tw, "saved state:\t%d MiB (the next up resumes it)\n", st.SaveBytes>>20)
			}
			if st.PristineSaveBytes != 0 {
				fmt.Fprintf(tw, "pristine save:\t%d MiB\n", st.PristineSaveBytes>>20)
			}
			for _, k := range []string{"rustc", "bindgen", "clang"} {
				if v := st.Toolchain[k]; v != "" {
					fmt.Fprintf(tw, "%s:\t%s\n", k, v)
				}
			}
			fmt.Fprintf(tw, "state dir:\t%s\n", st.StateDir)
			if st.Problem != "" {
				fmt.Fprintf(tw, "problem:\t%s\n", st.Problem)
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return c
}

// vmStatus is what `status --json` prints and the status tool of `kmodvm mcp` returns: a
// problem comes with the commands that fix it.
func (a *app) vmStatus(ctx context.Context) (sandbox.Status, error) {
	var st sandbox.Status
	err := a.withSandbox(ctx, func(sb *sandbox.Sandbox) error {
		var err error
		if st, err = sb.Status(ctx, a.vmName()); err != nil {
			return err
		}
		if len(st.Fix) > 0 {
			st.Problem += "; " + renderHint(&remedy.Error{Do: st.Fix}, st.Name)
		}
		return nil
	})
	return st, err
}

func shortID(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func (a *app) listCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "list",
		Short: "List kmodvm's VMs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withSandbox(cmd.Context(), func(sb *sandbox.Sandbox) error {
				all, err := sb.List(cmd.Context())
				if err != nil {
					return err
				}
				if a.jsonOut {
					if all == nil {
						all = []sandbox.Status{}
					}
					return a.printJSON(listJSON{Schema: schemaList, VMs: all})
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tSTATE\tACCEL\tSSH\tKERNEL")
				for _, st := range all {
					fmt.Fprintf(tw, "%s\t%s\t%s\t127.0.0.1:%d\t%s\n", st.Name, st.State, st.Accel, st.SSHPort, st.KernelRelease)
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return c
}

func (a *app) execCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "exec -- CMD [ARG...]",
		Short: "Run a command in the guest; exits with its status",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var code int
			if a.jsonOut {
				res, err := a.execCaptured(cmd.Context(), args, a.stdin)
				if err != nil {
					return err
				}
				if err := a.printJSON(execJSON{Schema: schemaExec, Command: args, execResult: res}); err != nil {
					return err
				}
				code = res.ExitCode
			} else {
				var err error
				if code, err = a.execInGuest(cmd.Context(), args, a.stdin, a.stdout, a.stderr); err != nil {
					return err
				}
			}
			if code != 0 {
				return silentExit(code)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON: the exit status and the output (up to 1 MiB of each stream)")
	return c
}

// execInGuest runs args in the guest over SSH and returns its exit status: `exec` and the
// exec tool of `kmodvm mcp`.
func (a *app) execInGuest(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	line := shellquote.Join(args...)
	if len(args) == 1 {
		line = args[0] // one word: a shell command line, as `ssh host 'cmd | grep x'`
	}
	var code int
	err := a.withGuest(ctx, func(_ *sandbox.Sandbox, g *sandbox.Guest) error {
		var err error
		code, err = g.SSH().Run(ctx, line, stdin, stdout, stderr)
		return err
	})
	return code, err
}

func (a *app) sshCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ssh",
		Short: "Open an interactive shell in the guest",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withGuest(cmd.Context(), func(_ *sandbox.Sandbox, g *sandbox.Guest) error {
				c := g.SSH()
				fd := int(os.Stdin.Fd())
				w, h := 80, 24
				termName := os.Getenv("TERM")
				if termName == "" {
					termName = "xterm"
				}
				resize := make(chan [2]int, 1)
				if term.IsTerminal(fd) {
					old, err := term.MakeRaw(fd)
					if err != nil {
						return fmt.Errorf("set terminal to raw mode: %w", err)
					}
					defer term.Restore(fd, old)
					if cw, ch, err := term.GetSize(fd); err == nil {
						w, h = cw, ch
					}
					winch := make(chan os.Signal, 1)
					signal.Notify(winch, syscall.SIGWINCH)
					defer signal.Stop(winch)
					go func() {
						for range winch {
							if cw, ch, err := term.GetSize(fd); err == nil {
								select {
								case resize <- [2]int{cw, ch}:
								default:
								}
							}
						}
					}()
				}
				code, err := c.Shell(cmd.Context(), a.stdin, a.stdout, a.stderr, termName, w, h, resize)
				if err != nil {
					return err
				}
				if code != 0 {
					return silentExit(code)
				}
				return nil
			})
		},
	}
}
