package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kmodvm/kmodvm/provision/bindindex"
	"github.com/kmodvm/kmodvm/provision/kernel"
)

// bindingsJSON is `bindings --json`.
type bindingsJSON struct {
	Schema        string        `json:"schema"`
	Query         string        `json:"query"`
	Regex         bool          `json:"regex"`
	VM            string        `json:"vm"` // "" when the kernel is kmodvm.yaml's, no VM's
	KernelRelease string        `json:"kernel_release"`
	KernelKey     string        `json:"kernel_key"`
	Bound         bool          `json:"bound"`
	Items         []bindingJSON `json:"items"`
	Missing       *missingJSON  `json:"missing,omitempty"`
}

type bindingJSON struct {
	Kind       string    `json:"kind"`
	Name       string    `json:"name"`
	Crate      string    `json:"crate"`
	Signature  string    `json:"signature"`
	Helper     string    `json:"helper,omitempty"`
	Enumerator string    `json:"enumerator,omitempty"`
	Path       string    `json:"path"`
	Line       int       `json:"line"`
	Uses       []useJSON `json:"uses"`
}

type useJSON struct {
	Path string `json:"path"`
	Line int    `json:"line"`
	Impl string `json:"impl,omitempty"`
	Fn   string `json:"fn,omitempty"`
}

type missingJSON struct {
	Declarations       []declJSON         `json:"declarations"`
	Header             string             `json:"header"`
	HeaderAlreadyBound bool               `json:"header_already_bound"`
	Options            []bindindex.Option `json:"options"`
	Config             string             `json:"config"`
	Note               string             `json:"note"`
	Suggestions        []string           `json:"suggestions"`
}

type declJSON struct {
	Path   string `json:"path"`
	Line   int    `json:"line"`
	Kind   string `json:"kind"`
	Text   string `json:"text"`
	Header string `json:"header"`
}

func (a *app) bindingsCmd() *cobra.Command {
	var regex bool
	c := &cobra.Command{
		Use:   "bindings QUERY",
		Short: "Look a C name up in the kernel's raw Rust bindings: its signature, where it is, who wraps it",
		Long: `Look QUERY up among the items bindgen generated for the kernel's bindings and uapi
crates (functions, rust_helper_* wrappers, structs, unions, constants, types, statics),
which rustdoc hides. Each item found is printed with its Rust signature, the generated
file and line on this host, and the kernel crate's code that uses it (the safe
abstraction to call instead, when there is one).

The kernel is the one VM -n boots (default: kmodvm.yaml's name) when that VM exists,
else the one kmodvm.yaml selects, if it is built. QUERY is an exact name (a C enumerator
finds its constant too); --regex makes it a pattern.

A name that is not bound exits 1 and says where C declares it and the kmodvm.yaml lines
that bind it, or why adding a header would not (static inline functions, macros).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.bindings(cmd.Context(), args[0], regex)
		},
	}
	c.Flags().BoolVar(&regex, "regex", false, "QUERY is a regular expression (Go syntax) matched against the names")
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return c
}

var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (a *app) bindings(ctx context.Context, query string, regex bool) error {
	out, missing, k, err := a.lookupBindings(ctx, query, regex)
	if err != nil {
		return err
	}
	if a.jsonOut {
		if err := a.printJSON(out); err != nil {
			return err
		}
	} else {
		switch {
		case missing != nil:
			fmt.Fprint(a.stdout, missing.Text(k.KDir(), k.Release))
		case !out.Bound:
			fmt.Fprintf(a.stdout, "no name bound in kernel %s matches %s\n", k.Release, query)
		default:
			printBindings(a, out)
		}
	}
	if !out.Bound {
		return silentExit(exitFailure)
	}
	return nil
}

// lookupBindings looks query up in the raw bindings of the kernel bindingsKernel finds: the
// kmodvm.bindings/v1 result, for an exact name found nowhere what explains it, and the
// kernel.
func (a *app) lookupBindings(ctx context.Context, query string, regex bool) (bindingsJSON, *bindindex.Missing, *kernel.Result, error) {
	var re *regexp.Regexp
	if regex {
		var err error
		if re, err = regexp.Compile(query); err != nil {
			return bindingsJSON{}, nil, nil, withCode(exitUsage, fmt.Errorf("--regex %q: %w; hint: Go regexp syntax, e.g. '^iio_device_'", query, err))
		}
	} else if !identRe.MatchString(query) {
		return bindingsJSON{}, nil, nil, withCode(exitUsage, fmt.Errorf("%q is not a C or Rust name; hint: pass --regex to look for a pattern", query))
	}
	k, vmName, err := a.bindingsKernel(ctx)
	if err != nil {
		return bindingsJSON{}, nil, nil, err
	}
	ix, err := bindindex.Load(k.BindingsDir())
	if errors.Is(err, bindindex.ErrNoIndex) {
		return bindingsJSON{}, nil, nil, noIndexError(k)
	}
	if err != nil {
		return bindingsJSON{}, nil, nil, err
	}
	var hits []bindindex.Hit
	if regex {
		hits = ix.Match(re)
	} else {
		hits = ix.Lookup(query)
	}
	out := bindingsJSON{Schema: schemaBindings, Query: query, Regex: regex, VM: vmName, KernelRelease: k.Release,
		KernelKey: k.Key, Bound: len(hits) > 0, Items: []bindingJSON{}}
	for _, h := range hits {
		out.Items = append(out.Items, hitJSON(ix, h))
	}
	var missing *bindindex.Missing
	if len(hits) == 0 && !regex {
		if missing, err = ix.Explain(k.KDir(), query); err != nil {
			return bindingsJSON{}, nil, nil, err
		}
		out.Missing = missingOut(k, missing)
	}
	return out, missing, k, nil
}

// bindingsKernel is the kernel `bindings` answers for: the VM's, when the VM exists, else
// kmodvm.yaml's when it is built (never building anything), and the VM's name ("" for
// kmodvm.yaml's kernel).
func (a *app) bindingsKernel(ctx context.Context) (*kernel.Result, string, error) {
	sb, err := a.offline()
	if err != nil {
		return nil, "", err
	}
	in, err := sb.Instance(a.vmName())
	if err == nil {
		k, err := in.KernelEntry()
		return k, in.Name, err
	}
	if a.name != "" { // -n names a VM that does not exist: say so
		return nil, "", err
	}
	k, kerr := sb.BuiltKernel(ctx)
	if kerr != nil {
		return nil, "", kerr
	}
	if k == nil {
		return nil, "", fmt.Errorf("there is no VM %s and the kernel kmodvm.yaml selects is not built; hint: `kmodvm kernel build` builds it (`kmodvm up` builds it and boots a VM)", a.vmName())
	}
	return k, "", nil
}

func hitJSON(ix *bindindex.Index, h bindindex.Hit) bindingJSON {
	b := bindingJSON{Kind: string(h.Kind), Name: h.Name, Crate: h.Crate, Signature: h.Sig, Helper: h.Helper,
		Enumerator: h.Enumerator, Path: ix.Path(h.File), Line: h.Line, Uses: []useJSON{}}
	for _, u := range h.Uses {
		b.Uses = append(b.Uses, useJSON{Path: ix.Path(u.File), Line: u.Line, Impl: u.Impl, Fn: u.Fn})
	}
	return b
}

func missingOut(k *kernel.Result, m *bindindex.Missing) *missingJSON {
	out := &missingJSON{Declarations: []declJSON{}, Header: m.Header, HeaderAlreadyBound: m.Included,
		Options: append([]bindindex.Option{}, m.Options...), Config: m.ConfigLines(), Note: m.Note(), Suggestions: m.Suggestions}
	if out.Suggestions == nil {
		out.Suggestions = []string{}
	}
	for _, d := range m.Decls {
		out.Declarations = append(out.Declarations, declJSON{Path: filepath.Join(k.KDir(), filepath.FromSlash(d.File)), Line: d.Line, Kind: d.Kind, Text: d.Text, Header: d.Header})
	}
	return out
}

// maxSig is how much of a signature a person is shown (a struct's fields can run long).
const maxSig = 240

// maxUses is how many uses a person is shown per item.
const maxUses = 8

func printBindings(a *app, out bindingsJSON) {
	for i, b := range out.Items {
		if i > 0 {
			fmt.Fprintln(a.stdout)
		}
		fmt.Fprintf(a.stdout, "%s %s::%s\n", b.Kind, b.Crate, b.Name)
		sig := b.Signature
		if len(sig) > maxSig {
			sig = sig[:maxSig] + " …"
		}
		fmt.Fprintf(a.stdout, "  %s\n  %s:%d\n", sig, b.Path, b.Line)
		if b.Helper != "" {
			fmt.Fprintf(a.stdout, "  C: through %s, a wrapper of a static inline function or macro\n", b.Helper)
		}
		if b.Enumerator != "" {
			fmt.Fprintf(a.stdout, "  C: the enumerator %s\n", b.Enumerator)
		}
		if len(b.Uses) == 0 {
			fmt.Fprintln(a.stdout, "  not used by the kernel crate")
			continue
		}
		fmt.Fprintf(a.stdout, "  used by the kernel crate (%d):\n", len(b.Uses))
		for j, u := range b.Uses {
			if j == maxUses {
				fmt.Fprintf(a.stdout, "    … %d more (--json lists them all)\n", len(b.Uses)-maxUses)
				break
			}
			where := strings.Join(nonEmpty(u.Impl, u.Fn), " / ")
			if where != "" {
				where = "  " + where
			}
			fmt.Fprintf(a.stdout, "    %s:%d%s\n", u.Path, u.Line, where)
		}
	}
}

func nonEmpty(s ...string) []string {
	var out []string
	for _, x := range s {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}
