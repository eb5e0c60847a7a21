package kernel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/provision/kconfig"

	"github.com/kmodvm/kmodvm/vm/golden"
)

// TestPlanConfigGolden: the merged Kconfig input and the set of verified options, for each
// base and fragment combination.
func TestPlanConfigGolden(t *testing.T) {
	tree := filepath.Join("testdata", "tree")
	user := filepath.Join(t.TempDir(), "user.config")
	os.WriteFile(user, []byte("CONFIG_KASAN=y\n# CONFIG_HZ_100 is not set\nCONFIG_HZ_250=y\n"), 0o644)
	cases := []struct {
		name      string
		base      string
		fragments []string
		debug     bool
	}{
		{"small", BaseSmall, nil, false},
		{"small-user", BaseSmall, []string{"CONFIG_DEBUG_KERNEL=y", "debug.config", user}, false},
		{"defconfig", BaseDefconfig, nil, false},
		{"defconfig-user", BaseDefconfig, []string{"# CONFIG_SMP is not set", "debug.config"}, false},
		// The debug variant: its fragment wins over tiny.config's unwinder, the user's over it.
		{"small-debug", BaseSmall, []string{"CONFIG_DEBUG_INFO_COMPRESSED_ZSTD=y", "# CONFIG_DEBUG_INFO_COMPRESSED_NONE is not set"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := PlanConfig(ConfigSpec{Base: tc.base, Fragments: tc.fragments, Debug: tc.debug}, tree, "package:linux-source-7.2=7.2.13-1")
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", "golden", tc.name+".merged.config"), plan.Merged.Bytes())
			golden.Check(t, filepath.Join("testdata", "golden", tc.name+".requested.config"), plan.Requested.Bytes())
		})
	}
}

func TestPlanConfigRules(t *testing.T) {
	tree := filepath.Join("testdata", "tree")
	base, err := PlanConfig(ConfigSpec{}, tree, "src-a")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := base.Requested.Value("RUST"); v != "y" {
		t.Errorf("RUST is not requested: %q", v)
	}
	if v, _ := base.Merged.Value("LOCALVERSION"); !strings.HasPrefix(v, `"-kmodvm-`) {
		t.Errorf("LOCALVERSION = %q", v)
	}
	// The user's fragment wins over ours.
	p, err := PlanConfig(ConfigSpec{Fragments: []string{"# CONFIG_PRINTK_TIME is not set"}}, tree, "src-a")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := p.Merged.Value("PRINTK_TIME"); v != "n" {
		t.Errorf("user fragment did not win: PRINTK_TIME=%q", v)
	}
	// Two user fragments that disagree are an error naming both.
	_, err = PlanConfig(ConfigSpec{Fragments: []string{"CONFIG_HZ_250=y", "# CONFIG_HZ_250 is not set"}}, tree, "src-a")
	if err == nil || !strings.Contains(err.Error(), "HZ_250") {
		t.Errorf("conflict inside the user layer: %v", err)
	}
	if _, err := PlanConfig(ConfigSpec{Base: "tiny"}, tree, "src-a"); err == nil {
		t.Error("unknown base accepted")
	}
	if _, err := PlanConfig(ConfigSpec{Fragments: []string{"nosuch.config"}}, tree, "src-a"); err == nil {
		t.Error("unknown fragment accepted")
	}
}

// TestInputHash: what changes the identity of a kernel request, and what does not.
func TestInputHash(t *testing.T) {
	tree := filepath.Join("testdata", "tree")
	hash := func(src string, spec ConfigSpec) string {
		t.Helper()
		p, err := PlanConfig(spec, tree, src)
		if err != nil {
			t.Fatal(err)
		}
		return p.InputHash
	}
	base := hash("src-a", ConfigSpec{})
	cases := []struct {
		name string
		got  string
		same bool
	}{
		{"same request", hash("src-a", ConfigSpec{}), true},
		{"explicit small base", hash("src-a", ConfigSpec{Base: BaseSmall}), true},
		{"fragment already requested", hash("src-a", ConfigSpec{Fragments: []string{"CONFIG_RUST=y"}}), true},
		{"other source", hash("src-b", ConfigSpec{}), false},
		{"other base", hash("src-a", ConfigSpec{Base: BaseDefconfig}), false},
		{"a user fragment", hash("src-a", ConfigSpec{Fragments: []string{"CONFIG_KASAN=y"}}), false},
		{"the debug variant", hash("src-a", ConfigSpec{Debug: true}), false},
	}
	for _, c := range cases {
		if (c.got == base) != c.same {
			t.Errorf("%s: hash %s vs base %s, want same=%v", c.name, c.got, base, c.same)
		}
	}
}

// TestCacheKey: the toolchain versions and the requested config are part of a kernel's
// identity; the order of the version map is not.
func TestCacheKey(t *testing.T) {
	tree := filepath.Join("testdata", "tree")
	other, err := PlanConfig(ConfigSpec{Fragments: []string{"CONFIG_KASAN=y"}}, tree, "src-a")
	if err != nil {
		t.Fatal(err)
	}
	// The debug variant of a request whose own fragments already say all the debug
	// fragment says: one config, yet the debug entry keeps vmlinux and the other does not.
	plain, err := PlanConfig(ConfigSpec{Fragments: []string{string(debugConfig)}}, tree, "src-a")
	if err != nil {
		t.Fatal(err)
	}
	debugTwin, err := PlanConfig(ConfigSpec{Fragments: []string{string(debugConfig)}, Debug: true}, tree, "src-a")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain.Merged.Bytes(), debugTwin.Merged.Bytes()) {
		t.Fatal("the twins' configs differ; the test needs them equal")
	}
	tc := map[string]string{"rustc": "rustc 1.97.1", "bindgen": "bindgen 0.72.1", "clang": "clang 21"}
	base := cacheKey("src-a", plain, tc)
	if cacheKey("src-a", plain, map[string]string{"clang": "clang 21", "bindgen": "bindgen 0.72.1", "rustc": "rustc 1.97.1"}) != base {
		t.Error("the key depends on map order")
	}
	for name, k := range map[string]string{
		"rustc upgrade": cacheKey("src-a", plain, map[string]string{"rustc": "rustc 1.98.0", "bindgen": "bindgen 0.72.1", "clang": "clang 21"}),
		"other source":  cacheKey("src-b", plain, tc),
		"other config":  cacheKey("src-a", other, tc),
		"debug variant": cacheKey("src-a", debugTwin, tc),
	} {
		if k == base {
			t.Errorf("%s does not change the key", name)
		}
	}
}

func TestParseSource(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "linux")
	for _, f := range []string{"Makefile", "Kconfig", "arch/x86/Kconfig", "init/Kconfig"} {
		os.MkdirAll(filepath.Dir(filepath.Join(tree, f)), 0o755)
		os.WriteFile(filepath.Join(tree, f), nil, 0o644)
	}
	os.WriteFile(filepath.Join(dir, "linux.tar.xz"), []byte("x"), 0o644)
	os.MkdirAll(filepath.Join(dir, "notakernel"), 0o755)
	sum := strings.Repeat("ab", 32)
	cases := []struct {
		spec, sum, wantKind, wantErr string
	}{
		{"", "", SourcePackage, ""},
		{"package", "", SourcePackage, ""},
		{"linux", "", SourceTree, ""},
		{"notakernel", "", "", "not a Linux kernel tree"},
		{"missing", "", "", "no such file"},
		{"linux.tar.xz", sum, SourceTarball, ""},
		{"linux.tar.xz", "", "", "sha256"},
		{"https://example.org/linux.tar.xz", sum, SourceTarball, ""},
		{"https://example.org/linux.tar.xz", "xyz", "", "sha256"},
	}
	for _, c := range cases {
		s, err := ParseSource(c.spec, c.sum, dir)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("ParseSource(%q): err %v, want %q", c.spec, err, c.wantErr)
			}
			continue
		}
		if err != nil || s.Kind != c.wantKind {
			t.Errorf("ParseSource(%q) = %+v, %v; want kind %s", c.spec, s, err, c.wantKind)
		}
	}
}

func TestFetchTarballChecksum(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k.tar.xz")
	os.WriteFile(p, []byte("kernel"), 0o644)
	bad := Source{Kind: SourceTarball, Path: p, SHA256: strings.Repeat("0", 64)}
	if _, err := fetchTarball(t.Context(), bad, filepath.Join(dir, "dl")); err == nil || !strings.Contains(err.Error(), "nothing was cached") {
		t.Fatalf("checksum mismatch: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "dl")); len(ents) != 0 {
		t.Fatalf("a failed download left %d files", len(ents))
	}
	sum := fmt.Sprintf("%x", sha256.Sum256([]byte("kernel")))
	good := Source{Kind: SourceTarball, Path: p, SHA256: sum}
	got, err := fetchTarball(t.Context(), good, filepath.Join(dir, "dl"))
	if err != nil || !strings.HasPrefix(filepath.Base(got), sum) {
		t.Fatalf("fetch: %s, %v", got, err)
	}
}

func TestMirrorTree(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	write := func(p, s string) {
		os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755)
		os.WriteFile(filepath.Join(src, p), []byte(s), 0o644)
	}
	write("Makefile", "a")
	write("kernel/fork.c", "b")
	write("kernel/gone.c", "c")
	if err := mirrorTree(t.Context(), src, dst); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dst, "kernel/fork.o"), []byte("obj"), 0o644) // a build output
	os.Remove(filepath.Join(src, "kernel/gone.c"))
	write("kernel/fork.c", "b2")
	if err := mirrorTree(t.Context(), src, dst); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "kernel/fork.c")); string(b) != "b2" {
		t.Errorf("changed file not copied: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dst, "kernel/gone.c")); !os.IsNotExist(err) {
		t.Errorf("deleted source file still in the build tree")
	}
	if _, err := os.Stat(filepath.Join(dst, "kernel/fork.o")); err != nil {
		t.Errorf("build output removed: %v", err)
	}
}

func TestStageKDirSelection(t *testing.T) {
	keep := []string{
		".config", "Module.symvers", "Makefile", "scripts/Makefile.build", "scripts/basic/fixdep",
		"scripts/mod/modpost", "scripts/target.json", "scripts/module.lds", "include/linux/module.h",
		"include/generated/rustc_cfg", "include/config/auto.conf", "arch/x86/include/generated/asm/orc_hash.h",
		"arch/x86/Makefile", "rust/kernel.rmeta", "rust/libmacros.so", "rust/libpin_init_internal.so",
		"include/linux/virtio_net.h", "tools/objtool/objtool", "lib/Kconfig.debug",
	}
	drop := []string{
		"kernel/fork.c", "kernel/fork.o", "rust/kernel.o", "rust/libkernel.rlib", "rust/kernel/lib.rs",
		"vmlinux", "vmlinux.o", "scripts/mod/.modpost.o.cmd", "scripts/mod/modpost.o", "tools/objtool/check.c",
		"arch/x86/kernel/head_64.S", "drivers/gpu/drm/amd/include/asic_reg/nbio/nbio_7_7_0_offset.h",
	}
	for _, p := range keep {
		if !keepFile(p) {
			t.Errorf("keepFile(%q) = false, want true", p)
		}
	}
	for _, p := range drop {
		if keepFile(p) {
			t.Errorf("keepFile(%q) = true, want false", p)
		}
	}
	for _, d := range []string{".git", "Documentation", "tools/perf", "samples"} {
		if !skipDir(d) {
			t.Errorf("skipDir(%q) = false", d)
		}
	}
	if skipDir("tools/objtool") || skipDir("rust") {
		t.Error("skipDir drops a needed dir")
	}
}

func TestStageKDirStopsWhenCancelled(t *testing.T) {
	tree, dst := t.TempDir(), filepath.Join(t.TempDir(), "kdir")
	for _, f := range []string{"Module.symvers", "Makefile", "include/config/auto.conf"} {
		os.MkdirAll(filepath.Dir(filepath.Join(tree, f)), 0o755)
		if err := os.WriteFile(filepath.Join(tree, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := StageKDir(ctx, tree, dst); !errors.Is(err, context.Canceled) {
		t.Fatalf("StageKDir with a cancelled context: %v, want context.Canceled", err)
	}
	if err := StageKDir(context.Background(), tree, dst); err != nil {
		t.Fatalf("StageKDir: %v", err)
	}
}

// StageRustSources keeps the .rs files of rust/ and scripts/, in tree layout, and nothing
// else; a tree without scripts/ is no error.
func TestStageRustSources(t *testing.T) {
	tree, dst := t.TempDir(), filepath.Join(t.TempDir(), "rust-src")
	for _, f := range []string{"rust/ffi.rs", "rust/kernel/lib.rs", "rust/bindings/bindings_generated.rs", "rust/kernel.o",
		"rust/libmacros.so", "rust/helpers/helpers.c", "kernel/fork.c", "drivers/gpu/nova/nova.rs"} {
		writeFile(t, filepath.Join(tree, f), "x")
	}
	if err := StageRustSources(t.Context(), tree, dst); err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dst, p)
			got = append(got, rel)
		}
		return err
	})
	want := []string{"rust/bindings/bindings_generated.rs", "rust/ffi.rs", "rust/kernel/lib.rs"}
	if !slices.Equal(got, want) {
		t.Errorf("StageRustSources kept %q, want %q", got, want)
	}
	writeFile(t, filepath.Join(tree, "scripts/generate_rust_target.rs"), "x")
	if err := StageRustSources(t.Context(), tree, dst); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "scripts/generate_rust_target.rs")); err != nil {
		t.Errorf("scripts/*.rs not kept: %v", err)
	}
}

func TestStageKDirRefusesUnbuiltTree(t *testing.T) {
	if err := StageKDir(context.Background(), t.TempDir(), t.TempDir()); err == nil || !strings.Contains(err.Error(), "Module.symvers") {
		t.Fatalf("StageKDir on an unbuilt tree: %v", err)
	}
}

// The embedded fragments parse, and each symbol appears once.
func TestFragmentsParse(t *testing.T) {
	for name, data := range map[string][]byte{"essentials": essentialsConfig, "rust": rustConfig, "kunit": kunitConfig, "debug": debugConfig} {
		if _, err := kconfig.ParseFragment(name, data); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// On a kernel whose KUnit has no autorun option (6.12: suites always run at insmod), the
// KUnit fragment leaves it out rather than failing the build on an unknown symbol; where the
// option exists, it is requested.
func TestKUnitOptionsOlderKernels(t *testing.T) {
	for _, c := range []struct {
		name    string
		kconfig string
		want    bool
	}{
		{"7.2", "config KUNIT_DEFAULT_ENABLED\n\tbool\n\nconfig KUNIT_AUTORUN_ENABLED\n\tbool \"Default value of kunit.autorun\"\n", true},
		{"6.12", "config KUNIT_DEFAULT_ENABLED\n\tbool\n\nconfig KUNIT_DEFAULT_FILTER_GLOB\n\tstring\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			tree := t.TempDir()
			writeFile(t, filepath.Join(tree, "lib/kunit/Kconfig"), c.kconfig)
			f, err := kconfig.ParseFragment("kunit", kunitConfig)
			if err != nil {
				t.Fatal(err)
			}
			if err := dropUndefined(f.Config, tree, kunitKconfig, kunitSince); err != nil {
				t.Fatal(err)
			}
			_, got := f.Config.Value("KUNIT_AUTORUN_ENABLED")
			if got != c.want {
				t.Errorf("KUNIT_AUTORUN_ENABLED requested: %v, want %v", got, c.want)
			}
			if v, _ := f.Config.Value("KUNIT"); v != "y" {
				t.Errorf("CONFIG_KUNIT=%q, want y", v)
			}
		})
	}
}
