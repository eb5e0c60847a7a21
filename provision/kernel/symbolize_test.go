package kernel

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/provision/ktrace"
)

// fakeBwrapAddr2Line stands in for bwrap running llvm-addr2line --output-style=JSON or ld.lld
// in a read-only root: it refuses a writable root and sees exactly the files bound into it.
// llvm-addr2line answers each query from its one read-only bound host file's lines
// "QUERY|FUNC|FILE:LINE" (several lines: an inline chain), with no position when none match.
// ld.lld "links" its read-only bound input into the read-write bound directory: a copy whose
// functions are named "FUNC (linked)", so that an answer tells which file was asked.
const fakeBwrapAddr2Line = `#!/bin/sh
ro=; host=; guest=; rwhost=; rwguest=
while [ "$1" != -- ]; do
	case $1 in
	--ro-root) ro=1; shift ;;
	--ro-bind) host=$2; guest=$3; shift 3 ;;
	--bind) rwhost=$2; rwguest=$3; shift 3 ;;
	*) echo "fake bwrap: unexpected option $1" >&2; exit 2 ;;
	esac
done
shift
[ -n "$ro" ] || { echo "fake bwrap: the root is writable" >&2; exit 2; }
if [ "$1" = ld.lld ]; then
	[ "$2" = -o ] || { echo "fake ld.lld: no -o first" >&2; exit 2; }
	out=$3; shift 3
	[ "$*" = "--unresolved-symbols=ignore-all --noinhibit-exec -e 0 $guest" ] || { echo "fake ld.lld: unexpected arguments $*" >&2; exit 2; }
	[ -n "$rwguest" ] && [ "$out" = "$rwguest/${out##*/}" ] || { echo "ld.lld: error: cannot open output file $out: Read-only file system" >&2; exit 1; }
	[ "${out##*/}" != fail.ko ] || { echo "ld.lld: error: fake failure" >&2; exit 1; }
	sed 's/^\([^|]*\)|\([^|]*\)|/\1|\2 (linked)|/' "$host" > "$rwhost/${out##*/}"
	exit
fi
[ -z "$rwguest" ] || { echo "fake bwrap: llvm-addr2line has a writable bind" >&2; exit 2; }
[ "$1" = llvm-addr2line ] || { echo "fake bwrap: runs $1, not llvm-addr2line" >&2; exit 2; }
shift
obj=; queries=
while [ $# -gt 0 ]; do
	case $1 in
	-e) obj=$2; shift 2 ;;
	-f|-i|--no-demangle|--output-style=JSON) shift ;;
	-*) echo "llvm-addr2line: unknown option $1" >&2; exit 2 ;;
	*) queries="$queries $1"; shift ;;
	esac
done
if [ -z "$guest" ] || [ "$obj" != "$guest" ]; then
	echo "llvm-addr2line: error: '$obj': No such file or directory" >&2; exit 1
fi
sep='['
for query in $queries; do
	printf '%s{"SymName":"%s","Loc":[' "$sep" "${query%%+*}"
	sep=,
	lsep=
	while IFS='|' read -r q fn loc; do
		if [ "$q" = "$query" ]; then
			printf '%s{"FunctionName":"%s","FileName":"%s","Line":%s}' "$lsep" "$fn" "${loc%:*}" "${loc##*:}"
			lsep=,
		fi
	done < "$host"
	printf ']}'
done
echo ']'
`

// fakeBwrap is a Toolchain whose commands run fakeBwrapAddr2Line with the run options as
// its arguments.
type fakeBwrap struct{ script string }

func (f fakeBwrap) Command(ctx context.Context, opt images.RunOptions, argv ...string) *exec.Cmd {
	var args []string
	if opt.ReadOnlyRoot {
		args = append(args, "--ro-root")
	}
	for _, b := range opt.Binds {
		flag := "--bind"
		if b.ReadOnly {
			flag = "--ro-bind"
		}
		args = append(args, flag, b.Host, b.Guest)
	}
	args = append(append(args, "--"), argv...)
	return exec.CommandContext(ctx, f.script, args...)
}

func TestSymbolizer(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "fake-bwrap")
	writeFile(t, script, fakeBwrapAddr2Line)
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	vmlinux := filepath.Join(dir, "kernel", "vmlinux")
	writeFile(t, vmlinux, "do_fault+0x1a|do_fault|/usr/src/kmodvm/linux/mm/memory.c:6012\n"+
		"inlined+0x4|helper|/usr/src/kmodvm/linux/include/linux/list.h:88\n"+
		"inlined+0x4|caller|/usr/src/kmodvm/linux/kernel/fork.c:12\n")
	first, second := filepath.Join(dir, "build-a"), filepath.Join(dir, "build-b")
	writeFile(t, filepath.Join(first, "other.ko"), "")
	writeFile(t, filepath.Join(second, "my-mod.ko"), "my_init+0x10|my_init|/root/mod/my-mod.c:7\n")
	writeFile(t, filepath.Join(second, "fail.ko"), "f_init+0x1|f_init|/root/mod/fail.c:3\n")
	// The linked copies are made under TMPDIR, and removed.
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)
	writeFile(t, filepath.Join(dir, "elsewhere.ko"), "evil+0x0|evil|/etc/shadow:1\n")
	if err := os.Symlink(filepath.Join(dir, "elsewhere.ko"), filepath.Join(first, "linked.ko")); err != nil {
		t.Fatal(err)
	}
	tc := fakeBwrap{script: script}
	withDebug, err := NewSymbolizer(tc, vmlinux, first, second, filepath.Join(dir, "not-built-yet"))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := NewSymbolizer(tc, "")
	if err != nil {
		t.Fatal(err)
	}
	gone, err := NewSymbolizer(tc, filepath.Join(dir, "removed", "vmlinux"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		s       *ktrace.Addr2Line
		module  string
		symbol  string
		offset  uint64
		want    []ktrace.Source
		noLine  bool   // the error wraps ktrace.ErrNoLine
		errWant string // the error says this ("" = no error)
	}{
		{name: "kernel frame", s: withDebug, symbol: "do_fault", offset: 0x1a,
			want: []ktrace.Source{{Func: "do_fault", File: "/usr/src/kmodvm/linux/mm/memory.c", Line: 6012}}},
		{name: "inline chain, innermost first", s: withDebug, symbol: "inlined", offset: 4,
			want: []ktrace.Source{{Func: "helper", File: "/usr/src/kmodvm/linux/include/linux/list.h", Line: 88}, {Func: "caller", File: "/usr/src/kmodvm/linux/kernel/fork.c", Line: 12}}},
		{name: "module named with _ whose file has -", s: withDebug, module: "my_mod", symbol: "my_init", offset: 0x10,
			want: []ktrace.Source{{Func: "my_init (linked)", File: "/root/mod/my-mod.c", Line: 7}}},
		{name: "module whose link fails is asked itself", s: withDebug, module: "fail", symbol: "f_init", offset: 1,
			want: []ktrace.Source{{Func: "f_init", File: "/root/mod/fail.c", Line: 3}}},
		{name: "address without line information", s: withDebug, symbol: "do_fault", offset: 0x99},
		{name: "module not built on the host", s: withDebug, module: "virtio_blk", symbol: "f", noLine: true, errWant: "module virtio_blk has no .ko built on the host"},
		{name: "a symlinked .ko is not followed", s: withDebug, module: "linked", symbol: "evil", noLine: true, errWant: "no .ko"},
		{name: "kernel without debug information", s: plain, symbol: "do_fault", offset: 0x1a, noLine: true, errWant: "hint: remove kernel.debug: false"},
		{name: "module of a kernel without debug information", s: plain, module: "my_mod", symbol: "my_init", noLine: true, errWant: "no .ko"},
		{name: "vmlinux gone from the cache", s: gone, symbol: "do_fault", offset: 0x1a, errWant: "cache entry is gone"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.s.Symbolize(t.Context(), c.module, []ktrace.Query{{Symbol: c.symbol, Offset: c.offset}})
			if c.errWant == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 1 || !slices.Equal(got[0], c.want) {
					t.Errorf("got %+v, want [%+v]", got, c.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.errWant) {
				t.Fatalf("err = %v, want one saying %q", err, c.errWant)
			}
			if errors.Is(err, ktrace.ErrNoLine) != c.noLine {
				t.Errorf("err = %v: wraps ErrNoLine %v, want %v", err, !c.noLine, c.noLine)
			}
		})
	}
	if left, err := os.ReadDir(tmp); err != nil || len(left) != 0 {
		t.Errorf("linked copies left in TMPDIR: %v %v", left, err)
	}
}

// With the real toolchain root, the query runs bwrap over the root mounted read-only, with
// only the object bound into it, read-only, at the path llvm-addr2line is given.
func TestSymbolizerRootCommand(t *testing.T) {
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Skip("bwrap is not installed: images.Root cannot build its command line")
	}
	dir := t.TempDir()
	vmlinux := filepath.Join(dir, "vmlinux")
	writeFile(t, vmlinux, "elf\n")
	s, err := NewSymbolizer(&images.Root{Dir: "/the/root"}, vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Command) != 1 || filepath.Base(s.Command[0]) != "bwrap" {
		t.Errorf("command = %q, want bwrap", s.Command)
	}
	obj, err := s.Object("")
	if err != nil || obj != vmlinux {
		t.Fatalf("object = %q, %v", obj, err)
	}
	args := strings.Join(s.Args(obj, []string{"do_fault+0x1a", "kthread+0x4"}), " ")
	for _, want := range []string{
		"--ro-bind /the/root /",
		"--ro-bind " + vmlinux + " /tmp/kmodvm-symbolize/vmlinux",
		"-- llvm-addr2line -f -i --no-demangle --output-style=JSON -e /tmp/kmodvm-symbolize/vmlinux do_fault+0x1a kthread+0x4",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("bwrap arguments lack %q:\n%s", want, args)
		}
	}
}
