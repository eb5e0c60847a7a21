package bindindex

import (
	"fmt"
	"regexp"
	"testing"
)

// benchIndex writes an index the size of a real kernel's (7.2, kmodvm's small config: 9,549
// fns and 3,070 structs in bindings_generated.rs, 18,000 consts, 1,900 uses in the kernel
// crate) to a temporary directory and returns it.
func benchIndex(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	ix := &Index{Version: Version, dir: dir}
	add := func(kind Kind, n int, sig string) {
		for i := range n {
			name := fmt.Sprintf("%s_%05d", kind, i)
			ix.Items = append(ix.Items, Item{Kind: kind, Name: name, Crate: "bindings", File: BindingsFile, Line: len(ix.Items) + 1,
				Sig: fmt.Sprintf(sig, name)})
		}
	}
	add(KindFn, 9500, "pub fn %s(dev: *mut device, flags: gfp_t, size: usize, node: ffi::c_int) -> *mut ffi::c_void;")
	add(KindStruct, 3100, "pub struct %s { pub next: *mut list_head, pub prev: *mut list_head, pub ops: *const file_operations, pub flags: ffi::c_ulong, pub lock: spinlock_t }")
	add(KindConst, 18000, "pub const %s: u32 = 4096;")
	add(KindType, 1400, "pub type %s = ffi::c_uint;")
	for i := range 1900 {
		ix.Uses = append(ix.Uses, Use{Crate: "bindings", Name: fmt.Sprintf("fn_%05d", i*5), File: "rust/kernel/device.rs", Line: i + 1,
			Impl: "impl<Ctx: DeviceContext> Device<Ctx>", Fn: "pub fn as_raw"})
	}
	if err := ix.Write(); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkQuery is what `kmodvm bindings NAME` does with the index: load it, look one name
// up.
func BenchmarkQuery(b *testing.B) {
	dir := benchIndex(b)
	b.ResetTimer()
	for b.Loop() {
		ix, err := Load(dir)
		if err != nil {
			b.Fatal(err)
		}
		if hits := ix.Lookup("fn_04750"); len(hits) != 1 || len(hits[0].Uses) != 1 {
			b.Fatalf("Lookup = %+v", hits)
		}
	}
}

// BenchmarkQueryRegex is `kmodvm bindings --regex`: load, then match every name.
func BenchmarkQueryRegex(b *testing.B) {
	dir := benchIndex(b)
	re := regexp.MustCompile(`^struct_01.*7$`)
	b.ResetTimer()
	for b.Loop() {
		ix, err := Load(dir)
		if err != nil {
			b.Fatal(err)
		}
		if hits := ix.Match(re); len(hits) != 100 {
			b.Fatalf("Match = %d hits", len(hits))
		}
	}
}
