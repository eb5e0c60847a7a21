package kernel

import (
	"archive/tar"
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/provision/kconfig"
)

// fakeMake stands in for the kernel's make in the toolchain root. It answers the targets
// the builder uses, and writes what a real build would in the tree (its working directory).
// Like kbuild, `all` writes rust/uapi/uapi_generated.rs through a shell redirection (the
// file exists, empty, before bindgen fills it), only when it is missing (the test removes it
// as a changed header would make make regenerate it), and rustc fails on an empty one as it
// does on the real thing. `all` writes bindings_generated.rs with one function and, where
// the tree has rust/bindings/bindings_helper.h, adds one for each function of the headers it
// includes, as a much simplified bindgen. `rustdoc` writes a tiny HTML tree where the
// kernel's does. Files the test puts in the tree steer it:
//
//	.fake-no-rust        rustavailable fails
//	.fake-drop           Kconfig drops the symbol named in it (as it drops an unmet RUST)
//	.fake-rustdoc-fail   rustdoc fails
//	.fake-pause-<point>  at <point> (allnoconfig, bindgen, rustdoc), touch .fake-paused-<point> and
//	                     wait for the fifo .fake-resume; on SIGINT remove the target, as
//	                     make does, and exit 130
//	.fake-crash-<point>  at <point>, die of SIGKILL (make had no chance to clean up)
const fakeMake = `#!/bin/sh
target=; mod=
for a; do
	case $a in
	LLVM=*|ARCH=*|-j*|-s) ;;
	INSTALL_MOD_PATH=*) mod=${a#INSTALL_MOD_PATH=} ;;
	*) target=$a ;;
	esac
done
echo "$target" >> "$FAKE_CALLS"
# point NAME FILE: the steering hooks, FILE being the target written at that point.
point() {
	if [ -e .fake-crash-$1 ]; then
		rm -f .fake-crash-$1
		kill -9 $$
	fi
	if [ -e .fake-pause-$1 ]; then
		rm -f .fake-pause-$1
		cat .fake-resume > /dev/null &
		trap 'kill $! 2>/dev/null; rm -f "$2"; exit 130' INT
		touch .fake-paused-$1
		wait $!
		trap - INT
	fi
}
step() { echo "  $1 $2"; }
case $target in
rustavailable)
	if [ -e .fake-no-rust ]; then echo "***"; echo "*** Rust bindings generator 'bindgen' is too old."; exit 2; fi
	echo "Rust is available!" ;;
kernelrelease)
	echo 7.2.13-kmodvm ;;
allnoconfig|olddefconfig)
	in=${KCONFIG_ALLCONFIG:-$KCONFIG_CONFIG}
	: > "$KCONFIG_CONFIG.new"
	point allnoconfig "$KCONFIG_CONFIG.new"
	if [ -e .fake-drop ]; then
		grep -v "^CONFIG_$(cat .fake-drop)=" "$in" > "$KCONFIG_CONFIG.new"
	else
		cat "$in" > "$KCONFIG_CONFIG.new"
	fi
	mv "$KCONFIG_CONFIG.new" "$KCONFIG_CONFIG" ;;
x86_64_defconfig)
	printf 'CONFIG_64BIT=y\nCONFIG_SMP=y\nCONFIG_NET=y\n' > "$KCONFIG_CONFIG" ;;
all)
	gen=rust/uapi/uapi_generated.rs
	mkdir -p rust/uapi include/config include/generated arch/x86/boot arch/x86/include/generated scripts/mod kernel
	if [ -e $gen ] && [ ! -s $gen ]; then
		echo "error[E0425]: cannot find value _IOC_SIZEMASK in crate uapi" >&2
		exit 2
	fi
	step SYNC include/config/auto.conf
	cp .config include/config/auto.conf
	grep LOCALVERSION .config > include/generated/autoconf.h
	if [ ! -e $gen ]; then
		step BINDGEN $gen
		: > $gen
		point bindgen $gen
		echo "pub const _IOC_SIZEMASK: u32 = 16383;" > $gen
	fi
	step BINDGEN rust/bindings/bindings_generated.rs
	mkdir -p rust/bindings
	printf '%s\n' 'unsafe extern "C" {' '    pub fn kfree(objp: *const ffi::c_void);' '}' > rust/bindings/bindings_generated.rs
	if [ -e rust/bindings/bindings_helper.h ]; then
		# bindgen: "pub fn NAME(" for each "int NAME(...);" of the included headers,
		# leaving out an #ifdef CONFIG_X block whose X is not y.
		for h in $(sed -n 's/^#include <\(.*\)>$/\1/p' rust/bindings/bindings_helper.h); do
			[ -e include/$h ] && awk '
				/^#ifdef CONFIG_/ { skip = 1; while ((getline l < ".config") > 0) if (l == $2 "=y") skip = 0; close(".config"); next }
				/^#endif/ { skip = 0; next }
				!skip && /^int [a-z_0-9]*\(.*\);$/ { n = $2; sub(/\(.*/, "", n); print "pub fn " n "(" }' include/$h
		done >> rust/bindings/bindings_generated.rs
	fi
	step CC kernel/fork.o
	echo obj > kernel/fork.o
	step HOSTCC scripts/mod/modpost
	echo elf > scripts/mod/modpost
	step BINDGEN rust/bindings/bindings_helpers_generated.rs
	printf '%s\n' 'unsafe extern "C" {' '    #[link_name="rust_helper_refcount_inc"]' '    pub fn refcount_inc(r: *mut refcount_t);' '}' > rust/bindings/bindings_helpers_generated.rs
	step RUSTC rust/kernel.o
	echo meta > rust/kernel.rmeta
	echo so > rust/libmacros.so
	step LD vmlinux
	echo elf > vmlinux
	step BUILD arch/x86/boot/bzImage
	cat .config > arch/x86/boot/bzImage
	step MODPOST Module.symvers
	echo syms > Module.symvers ;;
rust/)
	mkdir -p rust
	step RUSTC rust/kernel.o
	grep LOCALVERSION .config > rust/kernel.rmeta ;;
rustdoc)
	# The HTML says which .config, module.h and bindings_helper.h it was made with.
	if [ -e .fake-rustdoc-fail ]; then
		step RUSTDOC rust/kernel/lib.rs
		echo "error: unresolved link to Foo" >&2
		exit 2
	fi
	out=Documentation/output/rust/rustdoc
	rm -rf $out
	mkdir -p $out/kernel $out/static.files $out/src/kernel/alloc
	step RUSTDOC rust/kernel/lib.rs
	: > $out/kernel/index.html
	point rustdoc $out/kernel/index.html
	{ echo "<title>kernel - Rust</title>"; cat rust/kernel.rmeta; cat include/linux/module.h; grep '^#include' rust/bindings/bindings_helper.h 2>/dev/null; } > $out/kernel/index.html
	echo "<pre>impl Drop for Box</pre>" > $out/src/kernel/alloc/kbox.rs.html
	echo "body {}" > $out/static.files/rustdoc.css ;;
modules_install)
	d=$mod/lib/modules/7.2.13-kmodvm
	mkdir -p $d/kernel/samples/rust
	echo ko > $d/kernel/samples/rust/rust_minimal.ko
	ln -sf /usr/src/kmodvm/linux $d/build ;;
*)
	echo "fake make: unknown target $target" >&2; exit 2 ;;
esac
`

// fakeRoot is a toolchain root without bwrap: make is fakeMake, tar and dpkg-query are the
// host's tar and a stub. Guest paths in arguments and the environment are mapped to host
// paths through the binds, and /usr/src to the fake root's usr/src.
type fakeRoot struct {
	dir   string // the root's files
	make  string // the fake make script
	calls string // file fakeMake appends each target to

	mu    sync.Mutex
	argv0 []string
}

func newFakeRoot(t *testing.T) *fakeRoot {
	t.Helper()
	dir := t.TempDir()
	f := &fakeRoot{dir: dir, make: filepath.Join(dir, "fake-make"), calls: filepath.Join(dir, "make-calls")}
	if err := os.WriteFile(f.make, []byte(fakeMake), 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeRoot) Command(ctx context.Context, opt images.RunOptions, argv ...string) *exec.Cmd {
	binds := append([]images.Bind{}, opt.Binds...)
	binds = append(binds, images.Bind{Host: filepath.Join(f.dir, "usr/src"), Guest: "/usr/src"})
	sort.SliceStable(binds, func(i, j int) bool { return len(binds[i].Guest) > len(binds[j].Guest) })
	host := func(s string) string {
		for _, b := range binds {
			if i := strings.Index(s, b.Guest); i >= 0 {
				return s[:i] + b.Host + s[i+len(b.Guest):]
			}
		}
		return s
	}
	args := make([]string, len(argv))
	for i, a := range argv {
		args[i] = host(a)
	}
	f.mu.Lock()
	f.argv0 = append(f.argv0, argv[0])
	f.mu.Unlock()
	var cmd *exec.Cmd
	switch argv[0] {
	case "make":
		cmd = exec.CommandContext(ctx, f.make, args[1:]...)
	case "dpkg-query":
		cmd = exec.CommandContext(ctx, "echo", "linux-source-7.2 7.2.13-1")
	default:
		cmd = exec.CommandContext(ctx, args[0], args[1:]...)
	}
	cmd.Dir = host(opt.Dir)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "FAKE_CALLS=" + f.calls}
	for _, kv := range opt.Env {
		cmd.Env = append(cmd.Env, host(kv))
	}
	cmd.Stdout, cmd.Stderr = opt.Stdout, opt.Stderr
	images.InterruptOnCancel(cmd, images.InterruptGrace)
	return cmd
}

func (f *fakeRoot) Versions(ctx context.Context) (map[string]string, error) {
	return map[string]string{"rustc": "rustc 1.97.1", "bindgen": "bindgen 0.72.1", "clang": "clang 21.1", "ld.lld": "LLD 21.1"}, nil
}

// makeTargets returns the make targets run so far, in order.
func (f *fakeRoot) makeTargets(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(f.calls)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(data))
}

// fakeKernelSource writes a kernel source tree small enough for tests to dir: the config
// fragments of testdata/tree, a Kconfig defining every symbol ours and theirs name (plus
// extra), a few sources and headers.
func fakeKernelSource(t *testing.T, dir string, extra ...string) {
	t.Helper()
	syms := map[string]string{}
	addSyms := func(name string, data []byte) {
		f, err := kconfig.ParseFragment(name, data)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range f.Config.Symbols() {
			v, _ := f.Config.Value(s)
			syms[s] = v
		}
	}
	err := filepath.Walk("testdata/tree", func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("testdata/tree", p)
		writeFile(t, filepath.Join(dir, rel), string(data))
		if strings.HasSuffix(rel, ".config") {
			addSyms(rel, data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	addSyms("essentials", essentialsConfig)
	addSyms("rust", rustConfig)
	addSyms("kunit", kunitConfig)
	addSyms("debug", debugConfig)
	for _, s := range extra {
		syms[s] = "y"
	}
	syms["LOCALVERSION"] = `""`
	var kc strings.Builder
	for _, s := range slices.Sorted(maps.Keys(syms)) {
		typ := "bool"
		switch v := syms[s]; {
		case v == "m":
			typ = "tristate"
		case strings.HasPrefix(v, `"`):
			typ = "string"
		case v != "y" && v != "n" && v != "":
			typ = "int"
		}
		kc.WriteString("config " + strings.TrimPrefix(s, "CONFIG_") + "\n\t" + typ + " \"" + s + "\"\n\n")
	}
	writeFile(t, filepath.Join(dir, "Kconfig"), kc.String())
	for p, s := range map[string]string{
		"Makefile":                   "# the kernel's Makefile\n",
		"arch/x86/Kconfig":           "",
		"init/Kconfig":               "",
		"kernel/fork.c":              "int fork;\n",
		"include/linux/module.h":     "#define MODULE\n",
		"scripts/Makefile.build":     "# kbuild\n",
		"rust/kernel/lib.rs":         "//! the kernel crate\n",
		"rust/pin-init/src/lib.rs":   "//! pin-init\n",
		"rust/ffi.rs":                "//! ffi\n",
		"rust/syn/lib.rs":            "//! a host library of the macros crate\n",
		"rust/kernel/alloc/kbox.rs":  "impl<T> Drop for Box<T> {\n    fn drop(&mut self) {\n        unsafe { bindings::kfree(self.0.cast()) };\n    }\n}\n",
		"drivers/gpu/private.h":      "#define REGS\n",
		"Documentation/rust/doc.rst": "docs\n",
	} {
		writeFile(t, filepath.Join(dir, p), s)
	}
}

// fakePackage puts a linux-source tarball of a fake kernel tree in the fake root, where
// dpkg-query says the linux-source package has it.
func (f *fakeRoot) fakePackage(t *testing.T) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "linux-source-7.2")
	fakeKernelSource(t, src, "CONFIGFS_FS")
	tarball := filepath.Join(f.dir, "usr/src/linux-source-7.2.tar.xz")
	if err := os.MkdirAll(filepath.Dir(tarball), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(tarball)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(out)
	if err := tw.AddFS(os.DirFS(filepath.Dir(src))); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newTestBuilder returns a builder on a fake root with a fake linux-source package, and
// the progress it reports.
func newTestBuilder(t *testing.T) (*Builder, *fakeRoot, *progressLog) {
	t.Helper()
	root := newFakeRoot(t)
	root.fakePackage(t)
	pl := &progressLog{}
	b := &Builder{Root: root, RootHash: "roothash", Cache: t.TempDir(), Jobs: 2, Progress: pl.add}
	return b, root, pl
}

type progressLog struct {
	mu     sync.Mutex
	events []Progress
	on     func(Progress)
}

func (l *progressLog) add(p Progress) {
	l.mu.Lock()
	l.events = append(l.events, p)
	on := l.on
	l.mu.Unlock()
	if on != nil {
		on(p)
	}
}

func (l *progressLog) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s strings.Builder
	for _, p := range l.events {
		s.WriteString(p.Phase + ": " + p.Current + "\n")
	}
	return s.String()
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func mkfifo(p string) error { return syscall.Mkfifo(p, 0o600) }

// waitUntil polls cond until it holds; the test's own deadline bounds it.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := newTicker()
	defer tick.Stop()
	for !cond() {
		select {
		case <-t.Context().Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-tick.C:
		}
	}
}

func newTicker() *time.Ticker { return time.NewTicker(10 * time.Millisecond) }
