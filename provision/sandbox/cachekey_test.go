package sandbox

import (
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/provision/kernel"
)

// TestCacheKeys: the image key is the root's own cache key, and the joined key changes with
// the image and with the kernel request.
func TestCacheKeys(t *testing.T) {
	keys := func(img images.Spec, frags ...string) CacheKeys {
		t.Helper()
		sb := New(nil, Options{Image: img, Kernel: kernel.Request{
			Source: kernel.Source{Kind: kernel.SourcePackage}, Config: kernel.ConfigSpec{Fragments: frags},
		}})
		k, err := sb.CacheKeys(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	def := keys(images.DefaultSpec())
	if def.Image != images.DefaultSpec().Hash() {
		t.Errorf("image key %s is not the root's hash %s", def.Image, images.DefaultSpec().Hash())
	}
	if !strings.HasPrefix(def.Key, "kmodvm-"+def.Image[:16]+"-"+def.Kernel) || def.DiskFormat != images.DiskFormatVersion {
		t.Errorf("key %+v does not join its parts", def)
	}
	if again := keys(images.Spec{}); again != def {
		t.Errorf("the default spec written out and left empty give %+v and %+v", def, again)
	}
	withPkg := images.DefaultSpec()
	withPkg.Packages = []string{"strace"}
	for name, k := range map[string]CacheKeys{
		"extra package":   keys(withPkg),
		"kernel fragment": keys(images.DefaultSpec(), "CONFIG_KASAN=y"),
	} {
		if k.Key == def.Key {
			t.Errorf("%s: key unchanged (%s)", name, k.Key)
		}
	}
	if k := keys(withPkg); k.Kernel == def.Kernel {
		t.Error("another root must give another kernel key: the kernel's source version and toolchain come with it")
	}
	bad := New(nil, Options{Image: images.Spec{Suite: "Not A Suite"}})
	if _, err := bad.CacheKeys(t.Context()); err == nil {
		t.Error("an invalid image spec gave a key")
	}
}
