package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/provision/bindindex"
	"github.com/kmodvm/kmodvm/provision/kdoc"
	"github.com/kmodvm/kmodvm/provision/kernel"
	"github.com/kmodvm/kmodvm/vm/golden"
)

// docsVM is bindingsVM with the documentation of its kernel built (by a stand-in for
// rustdoc), as a run of `doc` before this one leaves it. It returns the kernel's entry.
func docsVM(t *testing.T) string {
	t.Helper()
	entry := bindingsVM(t, true)
	k, err := kernel.Open(entry)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := bindindex.Load(k.BindingsDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = kdoc.Build(t.Context(), nil, k, ix, func(_ context.Context, log io.Writer, dst string) error {
		fmt.Fprintln(log, "  RUSTDOC   rust/kernel/lib.rs")
		writeFiles(t, dst, map[string]string{"kernel/index.html": "<title>kernel - Rust</title>"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return entry
}

// TestDocCached: documentation built before is found in the kernel's entry, not built again:
// stdout is its front page, stderr says where the kernel crate and the bindings page are.
func TestDocCached(t *testing.T) {
	gold, err := filepath.Abs(filepath.Join("testdata", "doc-cached.json")) // runIn changes the directory
	if err != nil {
		t.Fatal(err)
	}
	entry := docsVM(t)
	doc := filepath.Join(entry, "doc")
	r := runIn(t, "", "doc")
	if r.code != 0 || r.stdout != filepath.Join(doc, "index.html")+"\n" {
		t.Fatalf("exit %d, stdout %q; want the front page's path", r.code, r.stdout)
	}
	for _, want := range []string{"found with the kernel (built in ", "the kernel crate: " + filepath.Join(doc, "rust", "kernel", "index.html"), "the raw bindings: " + filepath.Join(doc, "bindings.html") + " (34 items)"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
		}
	}

	r = runIn(t, "", "doc", "--json")
	seconds := regexp.MustCompile(`"build_seconds": [0-9.e-]+`)
	golden.Check(t, gold, []byte(seconds.ReplaceAllLiteralString(strings.ReplaceAll(r.stdout, entry, "$ENTRY"), `"build_seconds": $SECONDS`)))
	var got docJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("exit %d, %v", r.code, err)
	}
	want := docJSON{Schema: schemaDoc, VM: "kmodvm", KernelRelease: "7.2.13-kmodvm-1e61f939", KernelKey: "0123456789abcdef",
		Path: filepath.Join(doc, "index.html"), KernelCrate: filepath.Join(doc, "rust", "kernel", "index.html"),
		BindingsPage: filepath.Join(doc, "bindings.html"), BindingsItems: 34, Cached: true, BuildSeconds: got.BuildSeconds,
		Log: filepath.Join(doc, "build.log")}
	if got != want || got.BuildSeconds <= 0 {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	for _, p := range []string{got.Path, got.KernelCrate, got.BindingsPage, got.Log} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
}

// TestDocErrors: no kernel, a kernel built before the bindings index, a kernel whose
// toolchain root is gone, bad flags; each one paragraph with a hint.
func TestDocErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T)
		args  []string
		code  int
		want  string
	}{
		{"no-kernel", isolate, []string{"doc"}, 1, "is not built; hint: `kmodvm kernel build` builds it"},
		{"no-index", func(t *testing.T) { bindingsVM(t, false) }, []string{"doc"}, 1, "was built before kmodvm kept an index of its Rust bindings; hint: `rm -rf "},
		{"no-root", func(t *testing.T) { bindingsVM(t, true) }, []string{"doc"}, 1, "no toolchain root"},
		{"addr-without-serve", isolate, []string{"doc", "--addr", "127.0.0.1:8000"}, 2, "hint: add --serve"},
		{"addr-everywhere", isolate, []string{"doc", "--serve", "--addr", "0.0.0.0:8000"}, 2, "loopback address only (127.0.0.1 or ::1), never to the network; hint: --addr 127.0.0.1:8000"},
		{"addr-no-host", isolate, []string{"doc", "--serve", "--addr", ":8000"}, 2, "loopback address only"},
		{"addr-name", isolate, []string{"doc", "--serve", "--addr", "example.com:8000"}, 2, "loopback address only"},
		{"addr-bad", isolate, []string{"doc", "--serve", "--addr", "127.0.0.1"}, 2, "is not HOST:PORT"},
		{"addr-bad-port", isolate, []string{"doc", "--serve", "--addr", "127.0.0.1:99999"}, 2, "is not HOST:PORT"},
		{"argument", isolate, []string{"doc", "kfree"}, 2, "hint:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup(t)
			r := runIn(t, "", tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", r.code, r.stdout, r.stderr, tc.code, tc.want)
			}
			checkUserMessage(t, r.stderr)
		})
	}
}

// The error for a VM whose kernel kmodvm.yaml no longer builds names the VM and both ways
// out; for kmodvm.yaml's own kernel (its tree changed while building), the kernel build.
func TestOtherKernelError(t *testing.T) {
	k := &kernel.Result{Key: "0123456789abcdef", Release: "7.2.13-kmodvm-1e61f939"}
	msg := otherKernelError(k, "dev", nil).Error()
	for _, want := range []string{"VM dev boots kernel 7.2.13-kmodvm-1e61f939 (0123456789abcdef)", "`kmodvm doc -n dev --config FILE`", "`kmodvm destroy -n dev && kmodvm up -n dev`"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
	err := otherKernelError(k, "", fmt.Errorf("%w: keys differ", kernel.ErrOtherKernel))
	if !errors.Is(err, kernel.ErrOtherKernel) || !strings.Contains(err.Error(), "keys differ; hint: `kmodvm kernel build`") {
		t.Errorf("%v", err)
	}
}

// TestDocServe: --serve answers on 127.0.0.1 with the documentation and the kernel's
// headers rustdoc links to, prints its URL, refuses
// a request for another host name (DNS rebinding), and stops on Ctrl-C with exit 0.
func TestDocServe(t *testing.T) {
	entry := docsVM(t)
	for _, d := range []string{filepath.Join(entry, "doc"), filepath.Join(entry, "kdir")} {
		if err := os.Symlink("/etc", filepath.Join(d, "escape")); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	url, stop := serveDoc(t, ctx, "doc", "--serve")
	for _, tc := range []struct {
		path, host string
		code       int
		want       string
	}{
		{"", "", http.StatusOK, "Rust documentation of kernel 7.2.13-kmodvm-1e61f939"},
		{"rust/kernel/index.html", "", http.StatusOK, "<title>kernel - Rust</title>"},
		{"bindings.html", "", http.StatusOK, "bindings::refcount_inc"},
		{"bindings.html", "localhost:9000", http.StatusOK, "bindings::refcount_inc"}, // a forwarded port
		{"usr/src/kmodvm/linux/include/linux/slab.h", "", http.StatusOK, "kfree"},    // rustdoc's links to C headers
		{"bindings.html", "attacker.example:80", http.StatusForbidden, "127.0.0.1"},
		{"escape/hostname", "", 0, ""},                      // a symlink out of the documentation: not served
		{"usr/src/kmodvm/linux/escape/hostname", "", 0, ""}, // nor out of the kdir
	} {
		req, _ := http.NewRequestWithContext(ctx, "GET", url+tc.path, nil)
		if tc.host != "" {
			req.Host = tc.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if tc.code == 0 && resp.StatusCode == http.StatusOK {
			t.Errorf("GET /%s: served %.200s", tc.path, body)
		}
		if tc.code != 0 && (resp.StatusCode != tc.code || !strings.Contains(string(body), tc.want)) {
			t.Errorf("GET /%s (Host %q): %d, %.200s; want %d with %q", tc.path, tc.host, resp.StatusCode, body, tc.code, tc.want)
		}
	}
	code, stderr := stop()
	if code != 0 {
		t.Errorf("exit %d after Ctrl-C, want 0; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "serving "+filepath.Join(entry, "doc")+" on "+url+" (loopback only); Ctrl-C stops") {
		t.Errorf("stderr:\n%s", stderr)
	}
	if c, err := net.DialTimeout("tcp", strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/"), time.Second); err == nil {
		c.Close()
		t.Error("still listening after Ctrl-C")
	}
}

// serveDoc runs `kmodvm ARGS` (a doc --serve) and returns the URL it printed; stop ends it
// as Ctrl-C does and returns its exit code and stderr.
func serveDoc(t *testing.T, ctx context.Context, args ...string) (url string, stop func() (int, string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	var stderr strings.Builder
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, args, strings.NewReader(""), pw, &stderr)
		pw.Close()
	}()
	stop = func() (int, string) {
		cancel()
		code := <-done
		return code, stderr.String()
	}
	line, err := bufio.NewReader(pr).ReadString('\n')
	go io.Copy(io.Discard, pr)
	url = strings.TrimSpace(line)
	if err != nil || !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/") {
		code, errs := stop()
		t.Fatalf("kmodvm %s printed %q (%v), exit %d; stderr:\n%s", strings.Join(args, " "), line, err, code, errs)
	}
	return url, stop
}

// TestDocOpen: --open runs xdg-open on the front page; without one, or when it fails, the
// command says how to open it and succeeds all the same.
func TestDocOpen(t *testing.T) {
	for _, tc := range []struct {
		name, opener string // opener: the xdg-open script; "" for none
		want         string
	}{
		{"opens", "#!/bin/sh\necho \"$1\" > \"${0%/*}/opened\"\n", ""},
		{"no-opener", "", "no xdg-open here to open a browser: open "},
		{"opener-fails", "#!/bin/sh\necho 'xdg-open: no method available' >&2\nexit 3\n", "xdg-open could not open it (exit status 3): open "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entry := docsVM(t)
			bin := t.TempDir()
			if tc.opener != "" {
				writeFiles(t, bin, map[string]string{"xdg-open": tc.opener})
				if err := os.Chmod(filepath.Join(bin, "xdg-open"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("PATH", bin)
			r := runIn(t, "", "doc", "--open")
			index := filepath.Join(entry, "doc", "index.html")
			if r.code != 0 || r.stdout != index+"\n" {
				t.Fatalf("exit %d, stdout %q", r.code, r.stdout)
			}
			if tc.want != "" && !strings.Contains(r.stderr, tc.want+index) {
				t.Errorf("stderr does not say %q:\n%s", tc.want+index, r.stderr)
			}
			if tc.want == "" {
				if got, err := os.ReadFile(filepath.Join(bin, "opened")); err != nil || string(got) != index+"\n" {
					t.Errorf("xdg-open got %q, %v; want %s", got, err, index)
				}
			}
		})
	}
}
