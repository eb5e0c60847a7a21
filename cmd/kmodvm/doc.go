package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/kmodvm/kmodvm/provision/bindindex"
	"github.com/kmodvm/kmodvm/provision/kdoc"
	"github.com/kmodvm/kmodvm/provision/kernel"
	"github.com/kmodvm/kmodvm/provision/sandbox"
	"github.com/kmodvm/kmodvm/vm/hosttool"
)

// docJSON is `doc --json`.
type docJSON struct {
	Schema        string  `json:"schema"`
	VM            string  `json:"vm"` // "" when the kernel is kmodvm.yaml's, no VM's
	KernelRelease string  `json:"kernel_release"`
	KernelKey     string  `json:"kernel_key"`
	Path          string  `json:"path"`
	KernelCrate   string  `json:"kernel_crate"`
	BindingsPage  string  `json:"bindings_page"`
	BindingsItems int     `json:"bindings_items"`
	Cached        bool    `json:"cached"`
	BuildSeconds  float64 `json:"build_seconds"`
	Log           string  `json:"log"`
	URL           string  `json:"url,omitempty"`
}

// defaultDocAddr is where --serve listens unless --addr says: a free port of 127.0.0.1.
const defaultDocAddr = "127.0.0.1:0"

func (a *app) docCmd() *cobra.Command {
	var serve, open bool
	var addr string
	c := &cobra.Command{
		Use:   "doc",
		Short: "rustdoc for the exact kernel the VM boots, and a searchable page of its raw bindings",
		Long: `Build rustdoc's documentation of the kernel crate for the exact kernel the VM boots: its
config, its patches and its bindings (kmodvm.yaml kernel.*), made in that kernel's build
tree the first time (minutes) and kept with the kernel in the cache. With it comes a page
of the raw bindings and uapi crates, which rustdoc hides: every bound item with its Rust
signature, its generated file and line and the kernel crate's uses of it, and a search box.

The kernel is the one VM -n boots (default: kmodvm.yaml's name) when that VM exists, else
the one kmodvm.yaml selects, if it is built. stdout is the path of the documentation's
front page, index.html, which links the kernel crate and the bindings page.

--serve serves the documentation over HTTP on 127.0.0.1 only (--addr 127.0.0.1:PORT; a
free port by default) until Ctrl-C, and prints its URL instead; from another machine,
forward the port (ssh -L PORT:127.0.0.1:PORT HOST). --open opens the page in a browser
(xdg-open).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("addr") && !serve {
				return withCode(exitUsage, errors.New("--addr is where --serve listens; hint: add --serve, or drop --addr"))
			}
			var ln net.Listener
			if serve {
				var err error
				if ln, err = listenLoopback(addr); err != nil {
					return err
				}
				defer ln.Close()
			}
			return a.doc(cmd.Context(), ln, open)
		},
	}
	c.Flags().BoolVar(&serve, "serve", false, "serve the documentation on 127.0.0.1 until Ctrl-C, and print its URL")
	c.Flags().StringVar(&addr, "addr", defaultDocAddr, "where --serve listens: 127.0.0.1:PORT or [::1]:PORT (port 0: a free one)")
	c.Flags().BoolVar(&open, "open", false, "open the documentation in a browser (xdg-open)")
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return c
}

// listenLoopback listens on addr, which must be a loopback address: the documentation is
// never served to the network.
func listenLoopback(addr string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		return nil, withCode(exitUsage, fmt.Errorf("--addr %q is not HOST:PORT (%v); hint: --addr 127.0.0.1:8000", addr, err))
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, withCode(exitUsage, fmt.Errorf("--addr %q: kmodvm doc serves on a loopback address only (127.0.0.1 or ::1), never to the network; hint: --addr 127.0.0.1:%s, and from another machine forward the port: ssh -L %s:127.0.0.1:%s HOST", addr, port, port, port))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serve the documentation on %s: %w; hint: pick another port with --addr 127.0.0.1:PORT, or leave --addr out for a free one", addr, err)
	}
	return ln, nil
}

func (a *app) doc(ctx context.Context, ln net.Listener, open bool) error {
	k, vmName, err := a.bindingsKernel(ctx)
	if err != nil {
		return err
	}
	docs, err := kdoc.Open(k)
	if err == nil && docs == nil {
		docs, err = a.buildDocs(ctx, k, vmName)
	}
	if err != nil {
		return err
	}
	a.prog.Done()
	out := docJSON{Schema: schemaDoc, VM: vmName, KernelRelease: k.Release, KernelKey: k.Key, Path: docs.Index(),
		KernelCrate: docs.KernelCrate(), BindingsPage: docs.BindingsPage(), BindingsItems: docs.Items, Cached: docs.Cached,
		BuildSeconds: docs.BuildTime.Seconds(), Log: docs.Log()}
	target := out.Path
	if ln != nil {
		out.URL = "http://" + ln.Addr().String() + "/"
		target = out.URL
	}
	how := "built in " + docs.BuildTime.Round(time.Second).String() + ", kept with the kernel"
	if docs.Cached {
		how = "found with the kernel (built in " + docs.BuildTime.Round(time.Second).String() + ")"
	}
	a.prog.Status(fmt.Sprintf("documentation of kernel %s %s", k.Release, how))
	fmt.Fprintf(a.stderr, "    the kernel crate: %s\n    the raw bindings: %s (%d items)\n", out.KernelCrate, out.BindingsPage, out.BindingsItems)
	if a.jsonOut {
		if err := a.printJSON(out); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(a.stdout, target)
	}
	if ln == nil {
		if open {
			openPage(a.stderr, target, a.prog.Status)
		}
		return nil
	}
	return serveDocs(ctx, ln, docs.Dir, k.KDir(), func() {
		a.prog.Status(fmt.Sprintf("serving %s on %s (loopback only); Ctrl-C stops", docs.Dir, out.URL))
		if open {
			openPage(a.stderr, target, a.prog.Status)
		}
	})
}

// buildDocs builds the documentation of k, the kernel VM vmName boots ("" for kmodvm.yaml's
// kernel), with the request kmodvm.yaml makes, which must still build k.
func (a *app) buildDocs(ctx context.Context, k *kernel.Result, vmName string) (*kdoc.Docs, error) {
	ix, err := bindindex.Load(k.BindingsDir()) // the bindings page needs it: without one, no rustdoc run
	if errors.Is(err, bindindex.ErrNoIndex) {
		return nil, noIndexError(k)
	}
	if err != nil {
		return nil, err
	}
	opt, err := a.sandboxOptions()
	if err != nil {
		return nil, err
	}
	kb, err := sandbox.New(nil, opt).BuiltRootKernelBuilder()
	if err != nil {
		return nil, err
	}
	req := opt.Kernel
	if vmName != "" { // the VM's kernel may not be kmodvm.yaml's: say so before waiting for its tree
		if cur, err := kb.Lookup(ctx, req); err == nil && cur != nil && cur.Key != k.Key {
			return nil, otherKernelError(k, vmName, nil)
		}
	}
	a.prog.Status(fmt.Sprintf("building the documentation of kernel %s: make rustdoc in its build tree, once (minutes)", k.Release))
	docs, err := kdoc.Build(ctx, a.log, k, ix, func(ctx context.Context, log io.Writer, dst string) error {
		return kb.Rustdoc(ctx, req, k, log, dst)
	})
	if errors.Is(err, kernel.ErrOtherKernel) {
		return nil, otherKernelError(k, vmName, err)
	}
	return docs, err
}

// otherKernelError says that kmodvm.yaml no longer builds kernel k, so its documentation
// cannot be made: err is the kernel package's saying so, nil when it was found before.
func otherKernelError(k *kernel.Result, vmName string, err error) error {
	if vmName == "" {
		return fmt.Errorf("%w; hint: `kmodvm kernel build` builds the kernel kmodvm.yaml selects now, then run `kmodvm doc` again", err)
	}
	return fmt.Errorf("VM %s boots kernel %s (%s), which kmodvm.yaml no longer builds (its kernel source, config, patches or bindings changed since): the documentation is made in the kernel's build tree with exactly what it was built from; hint: run `kmodvm doc -n %s --config FILE` with the kmodvm.yaml the VM was made with, or `kmodvm destroy -n %s && kmodvm up -n %s` boots the kernel kmodvm.yaml selects now",
		vmName, k.Release, k.Key, vmName, vmName, vmName)
}

// noIndexError says that kernel k was built before kmodvm kept its bindings index, and how
// to build it again with one.
func noIndexError(k *kernel.Result) error {
	return fmt.Errorf("kernel %s (%s) was built before kmodvm kept an index of its Rust bindings; hint: `rm -rf %s && kmodvm kernel build` builds it again with one, with the kmodvm.yaml it was built from (make is incremental in the build tree kmodvm keeps; a VM booting it finds it at the same path)", k.Release, k.Dir, k.Dir)
}

// serveDocs serves the documentation dir on ln until ctx ends, calling ready once it
// answers. rustdoc links the kernel's C headers at their place in the toolchain root
// (kernel.GuestTree); they are served from kdir, the kernel's staged build tree. Nothing
// outside the two is served, through a symlink either (os.Root).
func serveDocs(ctx context.Context, ln net.Listener, dir, kdir string, ready func()) error {
	docRoot, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("serve the documentation: %w", err)
	}
	defer docRoot.Close()
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServerFS(docRoot.FS()))
	if kdirRoot, err := os.OpenRoot(kdir); err == nil { // a kernel without its kdir still has its documentation
		defer kdirRoot.Close()
		mux.Handle(kernel.GuestTree+"/", http.StripPrefix(kernel.GuestTree, http.FileServerFS(kdirRoot.FS())))
	}
	srv := &http.Server{Handler: loopbackHostOnly(mux), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	ready()
	select {
	case err := <-errc:
		return fmt.Errorf("serve the documentation: %w", err)
	case <-ctx.Done(): // Ctrl-C: the end of serving, not a failure
	}
	stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return srv.Shutdown(stop)
}

// loopbackHostOnly refuses a request whose Host is not a loopback address or localhost: a
// web page whose domain was made to resolve to 127.0.0.1 (DNS rebinding) cannot read what
// is served. A forwarded port keeps working (ssh -L: localhost:PORT).
func loopbackHostOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			http.Error(w, "kmodvm doc answers requests for 127.0.0.1, [::1] or localhost only", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// openPage opens target (a file or URL) with xdg-open, or says how to open it: a machine
// without a browser is no failure. xdg-open's own output goes to w.
func openPage(w io.Writer, target string, say func(string)) {
	opener, err := hosttool.Find("xdg-open")
	if err != nil {
		say(fmt.Sprintf("no xdg-open here to open a browser: open %s in one (from another machine: --serve, and forward its port with ssh -L)", target))
		return
	}
	cmd := exec.Command(opener, target)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		say(fmt.Sprintf("xdg-open did not start (%v): open %s in a browser", err, target))
		return
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			say(fmt.Sprintf("xdg-open could not open it (%v): open %s in a browser", err, target))
		}
	case <-time.After(3 * time.Second): // a browser it started runs on; it is not waited for
	}
}
