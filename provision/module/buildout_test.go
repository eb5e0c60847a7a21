package module

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/provision/kernel"
	"github.com/kmodvm/kmodvm/provision/ktrace"
	"github.com/kmodvm/kmodvm/vm/golden"
)

// TestBuildOutput reads testdata/buildout/<case>.out, a module build's output as make and
// the compilers print it in the guest or the toolchain root, makes it readable on the host
// as a run does, and compares the result with <case>.golden. The kernel's host directories
// are testdata/buildout/kdir (the staged tree) and ../../testdata/kernel-src (the kernel
// crate's sources its entry keeps).
func TestBuildOutput(t *testing.T) {
	td, err := filepath.Abs("testdata/buildout")
	if err != nil {
		t.Fatal(err)
	}
	kdir := filepath.Join(td, "kdir")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, remote, module string
	}{
		{"rust-host", "/root/kmodvm/src/cfgout-rust-1a2b3c4d", "../../testdata/modules/cfgout-rust"}, // configured out
		{"rust-guest", "/root/kmodvm/src/arc-9f8e7d6c", "testdata/buildout/arc"},                     // a guest-absolute path
		{"c-header", "/root/kmodvm/src/header-c-5e6f7a8b", "../../testdata/modules/header-c"},        // an include/ header
		{"c-old-kbuild", "/root/kmodvm/src/header-c-5e6f7a8b", "../../testdata/modules/header-c"},    // ./include, before 6.13
		{"nowhere", "/root/kmodvm/src/header-c-5e6f7a8b", "../../testdata/modules/header-c"},         // left as printed
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(td, c.name+".out"))
			if err != nil {
				t.Fatal(err)
			}
			host, err := filepath.Abs(c.module)
			if err != nil {
				t.Fatal(err)
			}
			r := &Runner{Mapper: ktrace.Mapper{GuestKernelDir: kernel.GuestTree, KernelSrc: kdir,
				KernelExtra: []string{filepath.Join(root, "testdata/kernel-src")}}}
			out, hints := buildOutput(string(data), r.mapper(c.remote, host), kdir)
			got := fmt.Sprintf("%s== %d hints\n", out, len(hints))
			got = strings.ReplaceAll(strings.ReplaceAll(got, td, "TESTDATA"), root, "REPO")
			golden.Check(t, filepath.Join(td, c.name+".golden"), []byte(got))
		})
	}
}
