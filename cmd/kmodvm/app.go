package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/kmodvm/kmodvm/cmd/kmodvm/config"
	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/provision/kernel"
	"github.com/kmodvm/kmodvm/provision/sandbox"
	"github.com/kmodvm/kmodvm/provision/treewatch"
	"github.com/kmodvm/kmodvm/vm"
)

// app is what every command shares: settings (kmodvm.yaml + flags), paths, output.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	args           []string // the command line, without "kmodvm"

	configPath string
	name       string
	accel      string
	port       int
	cold       bool // up --cold
	uri        string
	verbose    bool
	jsonOut    bool

	cfg   config.Config
	paths config.Paths
	log   *slog.Logger
	prog  *progress

	// openVM reaches the VM a module run works in, with up starting it first when it is not
	// running; nil is openModuleVM (through libvirt). The tests of `kmodvm mcp` give run and
	// test a fake VM here.
	openVM func(ctx context.Context, name string, up bool) (moduleVM, error)
	// libvirt connects to libvirt; nil is vm.Connect on vm.uri. Tests give the sandbox a
	// fake libvirt here.
	libvirt func(ctx context.Context) (vm.Libvirt, error)
	// prepareKernel, when set, replaces building a kernel of `kmodvm matrix` (its label):
	// tests run the matrix without building kernels.
	prepareKernel func(ctx context.Context, label string) error
	// watchOptions, when set, adjusts the file watcher of `kmodvm watch`: its tests give it a
	// manual clock and see the events it judged.
	watchOptions func(*treewatch.Options)
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) (*cobra.Command, *app) {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "kmodvm",
		Short: "A sandbox VM for Linux kernel module development, Rust first",
		Long: `kmodvm builds a Rust-enabled kernel with a matching toolchain, boots it in a
libvirt/QEMU sandbox, and syncs, builds, loads and judges your module there.

  kmodvm new mymodule       write a new module's skeleton (Rust; --lang c for C)
  kmodvm up                 start the sandbox (image and kernel are built once, cached)
  kmodvm run ./mymodule     sync, build, insmod, read the kernel log, judge, rmmod
  kmodvm watch ./mymodule   the same, again every time you save
  kmodvm logs -f            follow the guest's kernel log

` + exitCodesHelp(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if !needsSetup(cmd) {
				return nil
			}
			return a.setup(cmd)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", "", "config file (default: ./kmodvm.yaml if present)")
	pf.StringVarP(&a.name, "name", "n", "", "VM name (default: kmodvm.yaml's name, else kmodvm)")
	pf.StringVar(&a.uri, "uri", "", "libvirt URI (default: kmodvm.yaml vm.uri, else qemu:///system)")
	pf.BoolVarP(&a.verbose, "verbose", "v", false, "log what kmodvm does to stderr")
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return withCode(exitUsage, fmt.Errorf("%w; hint: run `%s --help`", err, c.CommandPath()))
	})
	root.AddCommand(
		a.upCmd(), a.downCmd(), a.destroyCmd(), a.statusCmd(), a.listCmd(),
		a.sshCmd(), a.execCmd(), a.doctorCmd(), a.imageCmd(), a.kernelCmd(),
		a.runCmd(), a.testCmd(), a.watchCmd(), a.syncCmd(), a.logsCmd(), a.cacheCmd(), a.mcpCmd(), a.crashesCmd(),
		a.newCmd(),
		a.bindingsCmd(),
		a.docCmd(),
		a.ideCmd(),
		a.matrixCmd(),
	)
	return root, a
}

// needsSetup is false for cobra's help and completion commands, for command groups
// (`kmodvm kernel`): they print help and must work whatever kmodvm.yaml says, and for
// commands annotated noSetup (`kmodvm new` writes files and reads no settings). A group that
// does work of its own (`kmodvm crashes` lists) says so with the annotation groupRuns.
func needsSetup(cmd *cobra.Command) bool {
	if cmd.HasSubCommands() && cmd.Annotations[groupRuns] == "" || cmd.Annotations[noSetup] != "" {
		return false
	}
	for c := cmd; c != nil; c = c.Parent() {
		switch c.Name() {
		case "help", "completion", cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd:
			return false
		}
	}
	return true
}

// setup loads kmodvm.yaml, applies the global flags and resolves the paths.
func (a *app) setup(cmd *cobra.Command) error {
	var err error
	if a.configPath != "" {
		a.cfg, err = config.Load(a.configPath)
	} else {
		wd, werr := os.Getwd()
		if werr != nil {
			return werr
		}
		a.cfg, err = config.LoadDefault(wd)
	}
	if err != nil {
		return withCode(exitUsage, err)
	}
	if a.name != "" {
		a.cfg.Name = a.name
	}
	if a.uri != "" {
		a.cfg.VM.URI = a.uri
	}
	if a.accel != "" {
		a.cfg.VM.Accel = a.accel
	}
	// Flags override kmodvm.yaml before the one validation both get.
	if f := cmd.Flags().Lookup("port"); f != nil && f.Changed {
		a.cfg.VM.Port = a.port
	}
	if err := a.cfg.Validate(); err != nil {
		return withCode(exitUsage, err)
	}
	home, _ := os.UserHomeDir()
	if a.paths, err = config.ResolvePaths(os.Getenv, home); err != nil {
		return withCode(exitUsage, err)
	}
	level := slog.LevelWarn
	if a.verbose {
		level = slog.LevelDebug
	}
	a.log = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
	a.prog = newProgress(a.stderr)
	return nil
}

// sandboxOptions turns the settings into the sandbox's options.
func (a *app) sandboxOptions() (sandbox.Options, error) {
	if err := config.EnsurePrivate(a.paths); err != nil {
		return sandbox.Options{}, err
	}
	src, err := kernel.ParseSource(a.cfg.Kernel.Source, a.cfg.Kernel.SHA256, a.cfg.Dir)
	if err != nil {
		return sandbox.Options{}, withCode(exitUsage, err)
	}
	accel, err := vm.ParseAccel(a.cfg.VM.Accel)
	if err != nil {
		return sandbox.Options{}, withCode(exitUsage, err)
	}
	return sandbox.Options{
		State: a.paths.State, Cache: a.paths.Cache,
		Image: images.Spec{Suite: a.cfg.Image.Suite, Mirror: a.cfg.Image.Mirror, SnapshotMirror: a.cfg.Image.SnapshotMirror,
			Packages: a.cfg.Image.Packages, Init: a.cfg.Image.Init},
		Kernel: kernel.Request{Source: src, Config: kernel.ConfigSpec{
			Base: a.cfg.Kernel.Base, Fragments: a.cfg.Kernel.Fragments, BaseDir: a.cfg.Dir, Debug: a.cfg.Kernel.DebugOn(),
		}, Patches: a.cfg.Kernel.Patches, Bindings: a.cfg.Kernel.Bindings},
		Jobs:      a.cfg.Kernel.Jobs,
		MemoryMiB: a.cfg.VM.Memory, CPUs: a.cfg.VM.CPUs, Accel: accel, Port: a.cfg.VM.Port, URI: a.cfg.VM.URI,
		Cold: a.cold,
		Log:  a.log, Status: a.prog.Status, KernelProgress: a.prog.Kernel,
	}, nil
}

// sandbox connects to libvirt and returns the sandbox; close() disconnects.
func (a *app) sandbox(ctx context.Context) (*sandbox.Sandbox, func(), error) {
	opt, err := a.sandboxOptions()
	if err != nil {
		return nil, nil, err
	}
	lv, err := a.connectLibvirt(ctx)
	if err != nil {
		return nil, nil, err
	}
	return sandbox.New(lv, opt), func() { _ = lv.Disconnect() }, nil
}

// connectLibvirt connects to the libvirt daemon behind vm.uri (or the tests' fake).
func (a *app) connectLibvirt(ctx context.Context) (vm.Libvirt, error) {
	if a.libvirt != nil {
		return a.libvirt(ctx)
	}
	c, err := vm.Connect(ctx, a.cfg.VM.URI, a.log)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// withSandbox runs body with a sandbox on a libvirt connection, disconnecting afterwards.
func (a *app) withSandbox(ctx context.Context, body func(*sandbox.Sandbox) error) error {
	sb, closeLV, err := a.sandbox(ctx)
	if err != nil {
		return err
	}
	defer closeLV()
	return body(sb)
}

// withGuest runs body with an SSH connection to the running VM.
func (a *app) withGuest(ctx context.Context, body func(*sandbox.Sandbox, *sandbox.Guest) error) error {
	return a.withSandbox(ctx, func(sb *sandbox.Sandbox) error {
		g, err := sb.Guest(ctx, a.vmName())
		if err != nil {
			return err
		}
		defer func() { g.Close() }()
		return body(sb, g)
	})
}

// withLockedGuest is withGuest holding the VM's lock: commands that change the guest wait
// for each other (and say so).
func (a *app) withLockedGuest(ctx context.Context, body func(*sandbox.Guest) error) error {
	return a.withGuest(ctx, func(_ *sandbox.Sandbox, g *sandbox.Guest) error {
		unlock, err := g.Lock(ctx)
		if err != nil {
			return err
		}
		defer unlock()
		return body(g)
	})
}

// offline returns a sandbox for work that needs no libvirt (image and kernel builds).
func (a *app) offline() (*sandbox.Sandbox, error) {
	opt, err := a.sandboxOptions()
	if err != nil {
		return nil, err
	}
	return sandbox.New(nil, opt), nil
}

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *app) vmName() string { return a.cfg.Name }

func since(t time.Time) string { return fmt.Sprintf("%.1f s", time.Since(t).Seconds()) }

// groupRuns annotates a command group that is a command too, and needs the settings.
const groupRuns = "kmodvm-group-runs"

// noSetup annotates a command that needs neither kmodvm.yaml nor kmodvm's directories.
const noSetup = "kmodvm-no-setup"
