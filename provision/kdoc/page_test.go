package kdoc

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/provision/bindindex"
	"github.com/kmodvm/kmodvm/vm/golden"
)

// fixtureTree is provision/bindindex's kernel tree fixture: bindgen-style generated files
// and kernel crate sources.
const fixtureTree = "../bindindex/testdata/tree"

var testKernel = Kernel{Release: "7.2.13-kmodvm-1e61f939", Key: "0123456789abcdef", Sources: "/cache/kernels/builds/0123456789abcdef/bindings"}

// The bindings page of the fixture: every item by name, escaped, with the kernel crate's
// uses linked to rustdoc's source pages where rustdoc has one.
func TestWriteBindings(t *testing.T) {
	ix, err := bindindex.Build(fixtureTree)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	err = WriteBindings(&b, testKernel, ix, func(file string) string {
		if file == "rust/kernel/sync/refcount.rs" { // rustdoc has no page of the others
			return "rust/src/kernel/sync/refcount.rs.html"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	page := b.String()
	golden.Check(t, "testdata/bindings.golden.html", b.Bytes())
	for _, want := range []string{
		`<div id="bindings-refcount_inc">`, // every item has its anchor
		`<a href="rust/src/kernel/sync/refcount.rs.html#46">rust/kernel/sync/refcount.rs:46</a>`,
		`<div id="uapi-__u32">`, `<div id="bindings-__u32">`, // one name in both crates: two items
		"C: through rust_helper_refcount_inc",
		"-&gt; bool_;",        // signatures are escaped
		`<option>fn</option>`, // the kinds the kernel has, to filter on
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if n := strings.Count(page, `<div id=`); n != len(ix.Items) {
		t.Errorf("the page lists %d items, the index has %d", n, len(ix.Items))
	}
	for _, bad := range []string{"<script src", "<link ", "http://", "https://"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page is not self-contained: it has %q", bad)
		}
	}
}

// Two items of one crate and name (a struct and a fn of the same name) get distinct anchors.
func TestWriteBindingsUniqueAnchors(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, dir, bindindex.KernelDir+"/lib.rs", "//! the kernel crate\n")
	writeTestFile(t, dir, bindindex.BindingsFile, "pub struct stat {\n    pub x: u32,\n}\nunsafe extern \"C\" {\n    pub fn stat(p: *const u8) -> i32;\n}\n")
	ix, err := bindindex.Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteBindings(&b, testKernel, ix, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`id="bindings-stat"`, `id="bindings-stat-2"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the page lacks %s:\n%s", want, b.String())
		}
	}
}

func TestWriteIndex(t *testing.T) {
	var b bytes.Buffer
	err := WriteIndex(&b, Index{Kernel: testKernel, Crates: []string{"kernel", "core", "macros", "pin_init"}, Items: 57400, BuildTime: 192400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/index.golden.html", b.Bytes())
}
