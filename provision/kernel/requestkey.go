package kernel

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kmodvm/kmodvm/provision/kconfig"
)

// RequestKey identifies req before anything is built, for caches kept outside kmodvm (a CI's
// cache action needs its key before it restores anything). The kernel's own cache key needs
// the toolchain root (the linux-source version, the tool versions) and the source's base
// fragments; each of those is fixed by the root (rootHash: a root is never rebuilt in place)
// or by the source's identity. So RequestKey hashes the root's hash, the source's identity,
// the base, kmodvm's recipe, the variant (debug or not), kmodvm's fragments (the debug one
// for the debug variant) merged with the user's, and the patches (by content) and bindings:
// whenever the kernel's cache key changes, RequestKey changes too. The converse fails only
// when the difference is absorbed by what RequestKey cannot see (a user fragment repeating a
// base fragment of the source; an in-tree fragment named two ways): a cache miss, never a
// stale hit.
func RequestKey(ctx context.Context, req Request, rootHash string) (string, error) {
	base := req.Config.Base
	if base == "" {
		base = BaseSmall
	}
	var src string
	switch req.Source.Kind {
	case SourcePackage:
		src = "package" // its version comes with the root
	case SourceTarball:
		src = "tarball:" + req.Source.SHA256
	case SourceTree:
		id, err := treeIdentity(ctx, req.Source.Path)
		if err != nil {
			return "", err
		}
		src = "tree:" + req.Source.Path + "@" + id
	default:
		return "", fmt.Errorf("unknown kernel source kind %q", req.Source.Kind)
	}
	parts := []string{recipe, rootHash, src, base}
	if req.Config.Debug {
		parts = append(parts, debugVariant)
	}
	ownFragments := []struct {
		name string
		data []byte
	}{{"essentials", essentialsConfig}, {"rust", rustConfig}, {"kunit", kunitConfig}}
	if req.Config.Debug {
		ownFragments = append(ownFragments, struct {
			name string
			data []byte
		}{"debug", debugConfig})
	}
	var own []kconfig.Fragment
	for _, f := range ownFragments {
		frag, err := kconfig.ParseFragment(f.name, f.data)
		if err != nil {
			return "", err
		}
		own = append(own, frag)
	}
	// The user's fragments merge with kmodvm's in order; an in-tree one (its text is in the
	// source) stands for itself by name and starts a new run of merged fragments.
	run := []kconfig.Layer{{Name: "kmodvm", Fragments: own}}
	flush := func() error {
		merged, err := kconfig.Merge(run...)
		if err != nil {
			return err
		}
		parts = append(parts, "config:"+string(merged.Bytes()))
		run = nil
		return nil
	}
	for _, s := range req.Config.Fragments {
		f, inTree, err := resolveForKey(s, req.Config.BaseDir)
		if err != nil {
			return "", err
		}
		if inTree != "" {
			if err := flush(); err != nil {
				return "", err
			}
			parts = append(parts, "in-tree:"+inTree)
			continue
		}
		run = append(run, kconfig.Layer{Name: f.Name, Fragments: []kconfig.Fragment{f}})
	}
	if err := flush(); err != nil {
		return "", err
	}
	patches, err := readPatches(req.Patches, req.Config.BaseDir)
	if err != nil {
		return "", err
	}
	parts = append(parts, variantParts(patches, req.Bindings)...)
	return shortHash(parts...), nil
}

// resolveForKey resolves a user fragment as PlanConfig does, without the kernel tree: inline
// lines and files are read (a file next to kmodvm.yaml wins over an in-tree name); a bare
// name that is no file is an in-tree fragment, returned by name.
func resolveForKey(spec, baseDir string) (f kconfig.Fragment, inTree string, err error) {
	name := strings.TrimSpace(spec)
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(baseDir, name)
	}
	_, statErr := os.Stat(path)
	bare := name != "" && !strings.ContainsAny(name, "/\n") && !strings.HasPrefix(name, kconfig.Prefix) && !strings.HasPrefix(name, "#")
	if bare && statErr != nil {
		return kconfig.Fragment{}, name, nil
	}
	f, err = kconfig.ResolveFragment(spec, "", baseDir)
	return f, "", err
}
