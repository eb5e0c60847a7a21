package config

import (
	"path/filepath"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzLoad checks that parsing never panics, that every error is a user-facing *Error of one
// paragraph with a hint (and no more than maxErrors of them), and that every accepted config
// is valid and survives a round trip through YAML.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		"",
		ExampleYAML,
		"name: a\nvm: {memory: 512, cpus: 2, accel: kvm, port: 2222}\n",
		"kernel:\n  source: ../linux-7.2.tar.xz\n  sha256: " + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + "\n",
		"kernel:\n  fragments: [CONFIG_RUST=y, \"# CONFIG_X is not set\", kvm_guest.config, ./f.config]\n",
		"module:\n  dir: mod\n  params: [a=1]\n  timeout: 90s\n",
		"vm:\n  memroy: 1\n",
		"vm:\n\tcpus: 1\n",
		"a: &a [*a]\n",
		"name: &n x\nimage:\n  packages: [*n, *n]\n",
		"vm:\n  cpus: 1\n  cpus: 2\n",
		"---\n---\n",
		"image: {packages: vim}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parse(data, FileName, testPath)
		if err != nil {
			checkUserError(t, err)
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v\ninput:\n%s", err, data)
		}
		if c.Path != testPath || !filepath.IsAbs(c.Module.Dir) {
			t.Fatalf("Path %q, Module.Dir %q: want %q and an absolute dir", c.Path, c.Module.Dir, testPath)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal accepted config: %v", err)
		}
		again, err := parse(out, FileName, testPath)
		if err != nil {
			t.Fatalf("re-parse marshalled config: %v\ninput:\n%s\nmarshalled:\n%s", err, data, out)
		}
		if !reflect.DeepEqual(c, again) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v\ninput:\n%s\nmarshalled:\n%s", c, again, data, out)
		}
	})
}
