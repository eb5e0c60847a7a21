package kdoc

import (
	"cmp"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/kmodvm/kmodvm/provision/bindindex"
)

// Kernel names the kernel the pages document.
type Kernel struct {
	Release string // uname -r
	Key     string // its cache key
	// Sources is where the generated files and the kernel crate's sources are on this host
	// (the entry's bindings/ directory): the pages name files relative to it.
	Sources string
}

//go:embed bindings.html.tmpl
var bindingsTemplate string

//go:embed index.html.tmpl
var indexTemplate string

var (
	bindingsPage = template.Must(template.New("bindings").Parse(bindingsTemplate))
	indexPage    = template.Must(template.New("index").Parse(indexTemplate))
)

// pageItem is one bound item as the bindings page shows it.
type pageItem struct {
	bindindex.Item
	ID   string // its anchor: crate-name, made unique
	Base string // its file's name (the generated files have distinct ones)
	Uses []pageUse
}

// pageUse is one place of the kernel crate that uses an item.
type pageUse struct {
	Where   string // file:line, relative to Kernel.Sources
	Link    string // its line on rustdoc's source page; "" when rustdoc has no page of the file
	Context string // "impl Refcount / pub fn inc"
}

// WriteBindings writes the page of the raw bindings (bindings, helpers and uapi crates,
// which rustdoc hides): every item of ix, by name, with its kind, crate, Rust signature,
// generated file and line, and the kernel crate's uses of it, a search box over the names
// (a small inline script; everything is in the one file). srcPage returns the link, relative
// to the page, of the rustdoc source page of a kernel crate file (rust/kernel/...), "" for
// none.
func WriteBindings(w io.Writer, k Kernel, ix *bindindex.Index, srcPage func(file string) string) error {
	hits := ix.All()
	slices.SortStableFunc(hits, func(a, b bindindex.Hit) int {
		return cmp.Or(cmp.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Crate, b.Crate))
	})
	items := make([]pageItem, 0, len(hits))
	ids := map[string]int{}
	kinds := map[string]bool{}
	for _, h := range hits {
		id := h.Crate + "-" + h.Name
		if n := ids[id]; n > 0 {
			id = fmt.Sprintf("%s-%d", id, n+1)
		}
		ids[h.Crate+"-"+h.Name]++
		kinds[string(h.Kind)] = true
		it := pageItem{Item: h.Item, ID: id, Base: path.Base(h.File)}
		for _, u := range h.Uses {
			pu := pageUse{Where: fmt.Sprintf("%s:%d", u.File, u.Line), Context: strings.Join(slices.DeleteFunc([]string{u.Impl, u.Fn}, isEmpty), " / ")}
			if l := srcPage(u.File); l != "" {
				pu.Link = fmt.Sprintf("%s#%d", l, u.Line)
			}
			it.Uses = append(it.Uses, pu)
		}
		items = append(items, it)
	}
	var kindList []string
	for _, kd := range []bindindex.Kind{bindindex.KindFn, bindindex.KindStruct, bindindex.KindUnion, bindindex.KindEnum, bindindex.KindConst, bindindex.KindType, bindindex.KindStatic} {
		if kinds[string(kd)] {
			kindList = append(kindList, string(kd))
		}
	}
	var files []string
	for _, g := range bindindex.GeneratedFiles {
		files = append(files, g.Path)
	}
	return bindingsPage.Execute(w, struct {
		Kernel
		Items []pageItem
		Kinds []string
		Files []string
	}{k, items, kindList, files})
}

// Index is what the documentation's front page says.
type Index struct {
	Kernel
	Crates    []string // the crates rustdoc documented, the kernel crate first
	Items     int      // items on the bindings page
	BuildTime time.Duration
}

// WriteIndex writes the documentation's front page: links to the kernel crate, the other
// crates rustdoc documented, and the bindings page.
func WriteIndex(w io.Writer, ix Index) error {
	return indexPage.Execute(w, struct {
		Index
		Built string
	}{ix, ix.BuildTime.Round(time.Second).String()})
}

func isEmpty(s string) bool { return s == "" }
