package bindindex

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/vm/golden"
)

const fixtureTree = "testdata/tree"

func parseFixture(t *testing.T, path, crate string) []Item {
	t.Helper()
	f, err := os.Open(filepath.Join(fixtureTree, path))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	items, err := Parse(f, path, crate)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

func itemsText(items []Item) string {
	var b strings.Builder
	for _, it := range items {
		fmt.Fprintf(&b, "%s:%d %s %s::%s", it.File, it.Line, it.Kind, it.Crate, it.Name)
		if it.Helper != "" {
			fmt.Fprintf(&b, " helper=%s", it.Helper)
		}
		if it.Enumerator != "" {
			fmt.Fprintf(&b, " enumerator=%s", it.Enumerator)
		}
		fmt.Fprintf(&b, "\n    %s\n", it.Sig)
	}
	return b.String()
}

// TestParse indexes the fixtures written in bindgen's style; the golden file lists every
// item, and the table pins the cases that are easy to get wrong.
func TestParse(t *testing.T) {
	var all []Item
	for _, g := range GeneratedFiles {
		all = append(all, parseFixture(t, g.Path, g.Crate)...)
	}
	golden.Check(t, "testdata/items.golden", []byte(itemsText(all)))

	find := func(file, name string) *Item {
		for i := range all {
			if all[i].File == file && all[i].Name == name {
				return &all[i]
			}
		}
		return nil
	}
	for _, tc := range []struct {
		file, name string
		kind       Kind
		line       int
		sig        string
		helper     string
	}{
		{BindingsFile, "kfree", KindFn, 85, "pub fn kfree(objp: *const ffi::c_void);", ""},
		{BindingsFile, "krealloc_node_align_noprof", KindFn, 89,
			"pub fn krealloc_node_align_noprof(objp: *const ffi::c_void, new_size: usize, align: ffi::c_ulong, flags: gfp_t, nid: ffi::c_int) -> *mut ffi::c_void;", ""},
		{BindingsFile, "__BindgenBitfieldUnit", KindStruct, 5, "pub struct __BindgenBitfieldUnit<Storage> { storage: Storage }", ""},
		{BindingsFile, "__IncompleteArrayField", KindStruct, 26, "pub struct __IncompleteArrayField<T>(::core::marker::PhantomData<T>, [T; 0]);", ""},
		{BindingsFile, "CONFIG_CC_VERSION_TEXT", KindConst, 28, `pub const CONFIG_CC_VERSION_TEXT: &[u8; 35] = b"Debian clang version 21.1.8 (14) {\0";`, ""},
		{BindingsFile, "call_rcu_func_t", KindType, 35,
			`pub type call_rcu_func_t = ::core::option::Option<unsafe extern "C" fn(head: *mut callback_head, func: rcu_callback_t)>;`, ""},
		{BindingsFile, "swap_func_t", KindType, 37,
			`pub type swap_func_t = ::core::option::Option<unsafe extern "C" fn(a: *mut ffi::c_void, b: *mut ffi::c_void, size: ffi::c_int)>;`, ""},
		{BindingsFile, "qspinlock__bindgen_ty_1", KindUnion, 67, "pub union qspinlock__bindgen_ty_1 { pub val: atomic_t, pub locked_pending: u16_ }", ""},
		{BindingsFile, "lru_status", KindStruct, 73, "pub struct lru_status(pub ffi::c_uint);", ""},
		{BindingsFile, "spectre_v2_user_mitigation_SPECTRE_V2_USER_STRICT_PREFERRED", KindConst, 75,
			"pub const spectre_v2_user_mitigation_SPECTRE_V2_USER_STRICT_PREFERRED: spectre_v2_user_mitigation = 2;", ""},
		{BindingsFile, "ioport_resource", KindStatic, 79, "pub static mut ioport_resource: resource;", ""},
		{BindingsFile, "current_stack_pointer", KindStatic, 99, "pub static mut current_stack_pointer: ffi::c_ulong;", ""},
		{HelpersFile, "refcount_inc", KindFn, 5, "pub fn refcount_inc(r: *mut refcount_t);", "rust_helper_refcount_inc"},
		{UapiFile, "drm_version", KindStruct, 8, "pub struct drm_version { pub version_major: ffi::c_int, pub version_minor: ffi::c_int, pub name_len: __kernel_size_t }", ""},
	} {
		it := find(tc.file, tc.name)
		if it == nil {
			t.Errorf("%s: no item %s", tc.file, tc.name)
			continue
		}
		if it.Kind != tc.kind || it.Line != tc.line || it.Sig != tc.sig || it.Helper != tc.helper {
			t.Errorf("%s %s = %s line %d %q helper %q; want %s line %d %q helper %q", tc.file, tc.name, it.Kind, it.Line, it.Sig, it.Helper, tc.kind, tc.line, tc.sig, tc.helper)
		}
	}
	// Accessors in impl blocks are no items.
	for _, name := range []string{"new", "get_bit", "default"} {
		if it := find(BindingsFile, name); it != nil {
			t.Errorf("%s, from an impl block, was indexed: %+v", name, *it)
		}
	}
}

func TestParseUnterminated(t *testing.T) {
	_, err := Parse(strings.NewReader("pub struct half {\n    pub a: u32,\n"), "x.rs", "bindings")
	if err == nil || !strings.Contains(err.Error(), "x.rs:1: struct half does not end") {
		t.Errorf("err = %v; want the item that does not end", err)
	}
}

func TestBracketDelta(t *testing.T) {
	for _, tc := range []struct {
		line string
		want int
	}{
		{`pub struct a {`, 1},
		{`pub const X: &[u8; 3] = b"{(\0";`, 0},
		{`pub const Q: &[u8; 2] = b"\"{";`, 0},
		{`pub const C: u8 = b'{';`, 0},
		{`pub const D: u8 = b'\'';`, 0},
		{`) -> *mut T;`, -1},
		{`fn f<'a>(x: &'a T) {`, 1},
	} {
		if got := bracketDelta(tc.line); got != tc.want {
			t.Errorf("bracketDelta(%q) = %d; want %d", tc.line, got, tc.want)
		}
	}
}

func scanFixture(t *testing.T, rel string) []Use {
	t.Helper()
	f, err := os.Open(filepath.Join(fixtureTree, rel))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	uses, err := ScanUses(f, rel)
	if err != nil {
		t.Fatal(err)
	}
	return uses
}

// TestScanUses: each use with the impl and fn it is in; comments and doc examples are none.
func TestScanUses(t *testing.T) {
	var got []string
	for _, rel := range []string{"rust/kernel/alloc/allocator.rs", "rust/kernel/sync/refcount.rs"} {
		for _, u := range scanFixture(t, rel) {
			got = append(got, fmt.Sprintf("%s:%d %s::%s impl=%q fn=%q", u.File, u.Line, u.Crate, u.Name, u.Impl, u.Fn))
		}
	}
	want := []string{
		`rust/kernel/alloc/allocator.rs:27 bindings::krealloc_node_align impl="impl ReallocFunc" fn=""`,
		`rust/kernel/alloc/allocator.rs:41 bindings::kfree impl="impl ReallocFunc" fn="unsafe fn call"`,
		`rust/kernel/alloc/allocator.rs:57 bindings::GFP_KERNEL impl="unsafe impl Allocator for Kmalloc" fn="unsafe fn realloc"`,
		`rust/kernel/alloc/allocator.rs:63 uapi::_IOC_NRBITS impl="" fn="fn page_size"`,
		`rust/kernel/sync/refcount.rs:20 bindings::refcount_t impl="" fn=""`,
		`rust/kernel/sync/refcount.rs:28 bindings::REFCOUNT_INIT impl="impl Refcount" fn="pub fn new"`,
		`rust/kernel/sync/refcount.rs:32 bindings::refcount_t impl="impl Refcount" fn="fn as_ptr"`,
		`rust/kernel/sync/refcount.rs:46 bindings::refcount_inc impl="impl Refcount" fn="pub fn inc"`,
		`rust/kernel/sync/refcount.rs:58 bindings::refcount_dec_and_test impl="impl Refcount" fn="pub fn dec_and_test"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("uses:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func stageFixture(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "bindings")
	if err := Stage(context.Background(), fixtureTree, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestStageLoadLookup: a staged directory holds the files and an index that finds items by
// name, by C enumerator and by pattern, with the kernel crate's uses, at paths that exist.
func TestStageLoadLookup(t *testing.T) {
	dir := stageFixture(t)
	if _, err := os.Stat(filepath.Join(dir, "include")); !os.IsNotExist(err) {
		t.Errorf("Stage kept the headers too (stat: %v): the kdir keeps those", err)
	}
	ix, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ix.Dir() != dir {
		t.Errorf("Dir() = %s; want %s", ix.Dir(), dir)
	}
	hits := ix.Lookup("refcount_inc")
	if len(hits) != 1 || hits[0].Helper != "rust_helper_refcount_inc" || len(hits[0].Uses) != 1 || hits[0].Uses[0].Fn != "pub fn inc" {
		t.Fatalf("Lookup(refcount_inc) = %+v; want the helper with its one use in Refcount::inc", hits)
	}
	for _, f := range []string{hits[0].File, hits[0].Uses[0].File} {
		if _, err := os.Stat(ix.Path(f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	// A C enumerator finds its constified constant.
	if hits := ix.Lookup("SPECTRE_V2_USER_STRICT_PREFERRED"); len(hits) != 1 || hits[0].Name != "spectre_v2_user_mitigation_SPECTRE_V2_USER_STRICT_PREFERRED" {
		t.Errorf("Lookup(SPECTRE_V2_USER_STRICT_PREFERRED) = %+v", hits)
	}
	// The same name in both crates: two hits, each with its own crate's uses.
	hits = ix.Lookup("__u32")
	if len(hits) != 2 || hits[0].Crate != "bindings" || hits[1].Crate != "uapi" {
		t.Errorf("Lookup(__u32) = %+v; want bindings::__u32 and uapi::__u32", hits)
	}
	if hits := ix.Lookup("_IOC_NRBITS"); len(hits) != 1 || len(hits[0].Uses) != 1 || hits[0].Uses[0].Crate != "uapi" {
		t.Errorf("Lookup(_IOC_NRBITS) = %+v; want one uapi use", hits)
	}
	if hits := ix.Lookup("iio_dev"); hits != nil {
		t.Errorf("Lookup(iio_dev) = %+v; want nothing", hits)
	}
	var names []string
	for _, h := range ix.Match(regexp.MustCompile(`^refcount_`)) {
		names = append(names, h.Name)
	}
	if got := strings.Join(names, " "); got != "refcount_t refcount_struct refcount_warn_saturate refcount_inc refcount_dec_and_test" {
		t.Errorf("Match(^refcount_) = %s", got)
	}
	// All is every item, in file order, each with the uses Lookup gives it.
	all := ix.All()
	if len(all) != len(ix.Items) {
		t.Fatalf("All() has %d items, the index %d", len(all), len(ix.Items))
	}
	for i, h := range all {
		if h.Item != ix.Items[i] {
			t.Fatalf("All()[%d] = %+v, want %+v", i, h.Item, ix.Items[i])
		}
		if h.Name == "refcount_inc" && (len(h.Uses) != 1 || h.Uses[0].Fn != "pub fn inc") {
			t.Errorf("All() gives refcount_inc the uses %+v", h.Uses)
		}
	}
}

func TestLoadNoIndex(t *testing.T) {
	empty := t.TempDir()
	if _, err := Load(empty); !errors.Is(err, ErrNoIndex) {
		t.Errorf("Load(empty dir) = %v; want ErrNoIndex", err)
	}
	old := t.TempDir()
	ix := &Index{Version: Version + 1, dir: old}
	if err := ix.Write(); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(old); !errors.Is(err, ErrNoIndex) || !strings.Contains(err.Error(), fmt.Sprintf("version %d", Version+1)) {
		t.Errorf("Load(another version) = %v; want ErrNoIndex naming the version", err)
	}
	if err := os.WriteFile(filepath.Join(old, IndexFile), []byte("not gob"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(old); err == nil || errors.Is(err, ErrNoIndex) {
		t.Errorf("Load(garbage) = %v; want a read error", err)
	}
}

func TestStageWithoutRust(t *testing.T) {
	tree := t.TempDir()
	err := Stage(context.Background(), tree, filepath.Join(t.TempDir(), "b"))
	if err == nil || !strings.Contains(err.Error(), BindingsFile) {
		t.Errorf("Stage(a tree without bindings) = %v; want an error naming %s", err, BindingsFile)
	}
}
