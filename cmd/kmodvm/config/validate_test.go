package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// fieldsOfError returns the Field of every *FieldError joined in err.
func fieldsOfError(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var fields []string
	for _, e := range flatten(err) {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("error %q is not a *FieldError", e)
		}
		fields = append(fields, fe.Field)
	}
	return fields
}

func TestValidate(t *testing.T) {
	sha := strings.Repeat("0a", 32)
	tests := []struct {
		name string
		edit func(*Config)
		want []string // fields reported, in order; nil = valid
	}{
		{"defaults", func(*Config) {}, nil},
		{"limits low", func(c *Config) {
			c.VM.Memory, c.VM.CPUs, c.VM.Port, c.Kernel.Jobs, c.VM.CrashRetention = 256, 1, 1024, 0, 0
		}, nil},
		{"limits high", func(c *Config) {
			c.VM.Memory, c.VM.CPUs, c.VM.Port, c.Kernel.Jobs, c.VM.CrashRetention = 65536, 64, 65535, 1024, 1000
		}, nil},
		{"below limits", func(c *Config) {
			c.VM.Memory, c.VM.CPUs, c.VM.Port, c.Kernel.Jobs, c.VM.CrashRetention = 255, 0, 1023, -1, -1
		},
			[]string{"vm.memory", "vm.cpus", "vm.crash_retention", "vm.port", "kernel.jobs"}},
		{"above limits", func(c *Config) {
			c.VM.Memory, c.VM.CPUs, c.VM.Port, c.Kernel.Jobs, c.VM.CrashRetention = 65537, 65, 65536, 1025, 1001
		},
			[]string{"vm.memory", "vm.cpus", "vm.crash_retention", "vm.port", "kernel.jobs"}},
		{"40-character name", func(c *Config) { c.Name = strings.Repeat("a", 39) + "1" }, nil},
		{"digit-first name with dash", func(c *Config) { c.Name = "7-up" }, nil},
		{"bad names", func(c *Config) { c.Name = "a_b" }, []string{"name"}},
		{"enums empty", func(c *Config) {
			c.VM.Accel, c.Image.Suite, c.Image.Init, c.Kernel.Base, c.Module.Build = "", "", "", "", ""
		}, []string{"vm.accel", "image.suite", "image.init", "kernel.base", "module.build"}},
		{"enums set", func(c *Config) {
			c.VM.Accel, c.Image.Suite, c.Image.Init, c.Kernel.Base, c.Module.Build = AccelKVM, SuiteTrixie, InitSystemd, BaseDefconfig, BuildHost
		}, nil},
		{"URIs", func(c *Config) { c.VM.URI = "qemu+tcp://host:16509/session" }, nil},
		{"URI without path", func(c *Config) { c.VM.URI = "qemu://" }, []string{"vm.uri"}},
		{"URI of another driver", func(c *Config) { c.VM.URI = "lxc:///system" }, []string{"vm.uri"}},
		{"https mirror", func(c *Config) { c.Image.Mirror = "https://deb.debian.org/debian" }, nil},
		{"ftp mirror", func(c *Config) { c.Image.Mirror = "ftp://deb.debian.org/debian" }, []string{"image.mirror"}},
		{"packages", func(c *Config) { c.Image.Packages = []string{"g++", "libstdc++6", "python3.12", "x", "a b", "-x"} },
			[]string{"image.packages[3]", "image.packages[4]", "image.packages[5]"}},
		{"tree source", func(c *Config) { c.Kernel.Source = "/src/linux" }, nil},
		{"tree with sha256", func(c *Config) { c.Kernel.Source, c.Kernel.SHA256 = "/src/linux", sha }, []string{"kernel.sha256"}},
		{"tarball with sha256", func(c *Config) { c.Kernel.Source, c.Kernel.SHA256 = "/src/linux.tar.zst", sha }, nil},
		{"tarball with upper-case sha256", func(c *Config) { c.Kernel.Source, c.Kernel.SHA256 = "/src/linux.tar", strings.ToUpper(sha) }, nil},
		{"tarball without sha256", func(c *Config) { c.Kernel.Source = "/src/linux.tar.bz2" }, []string{"kernel.source"}},
		{"tarball with bad sha256", func(c *Config) { c.Kernel.Source, c.Kernel.SHA256 = "/src/linux.tgz", sha[:63]+"g" }, []string{"kernel.sha256"}},
		{"URL without host", func(c *Config) { c.Kernel.Source, c.Kernel.SHA256 = "https:///linux.tar.xz", sha }, []string{"kernel.source"}},
		{"empty source", func(c *Config) { c.Kernel.Source = "" }, []string{"kernel.source"}},
		{"fragments", func(c *Config) {
			c.Kernel.Fragments = []string{"CONFIG_A=y", "CONFIG_B=m", "CONFIG_C=n", "CONFIG_D=-12", "CONFIG_E=0x1F",
				`CONFIG_F="a \"b\""`, "# CONFIG_G is not set", "kvm_guest.config", "/x/y.config", "rel/z"}
		}, nil},
		{"bad fragments", func(c *Config) {
			c.Kernel.Fragments = []string{"CONFIG_A=yes", "CONFIG_B", "# CONFIG_C", `CONFIG_D="open`, "", "~/x.config", "CONFIG_E=y # comment"}
		}, []string{"kernel.fragments[0]", "kernel.fragments[1]", "kernel.fragments[2]", "kernel.fragments[3]",
			"kernel.fragments[4]", "kernel.fragments[5]", "kernel.fragments[6]"}},
		{"params", func(c *Config) { c.Module.Params = []string{"a=1", "_b.c=x y", "d=", "e==", "f=\t", "g=a\nb", "h=\r"} }, nil},
		{"bad params", func(c *Config) { c.Module.Params = []string{"=1", "a", "b-c=1", "d=\x00", "e\n=1"} },
			[]string{"module.params[0]", "module.params[1]", "module.params[2]", "module.params[3]", "module.params[4]"}},
		{"module dir", func(c *Config) { c.Module.Dir = "" }, []string{"module.dir"}},
		{"zero timeout", func(c *Config) { c.Module.Timeout = 0 }, []string{"module.timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.edit(&c)
			got := fieldsOfError(t, c.Validate())
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Validate reported %q, want %q (error: %v)", got, tt.want, c.Validate())
			}
		})
	}
}

func TestSourceKind(t *testing.T) {
	tests := []struct {
		source string
		want   SourceKind
	}{
		{"package", SourcePackage},
		{"/usr/src/linux", SourceTree},
		{"../linux", SourceTree},
		{"packages", SourceTree},
		{"/dl/linux-7.2.tar.xz", SourceTarball},
		{"linux.tgz", SourceTarball},
		{"linux.tar", SourceTarball},
		{"linux.tar.zst", SourceTarball},
		{"https://cdn.kernel.org/pub/linux/kernel/v7.x/linux-7.2.tar.xz", SourceURL},
		{"http://mirror/linux", SourceURL},
	}
	for _, tt := range tests {
		if got := (Kernel{Source: tt.source}).SourceKind(); got != tt.want {
			t.Errorf("SourceKind(%q) = %d, want %d", tt.source, got, tt.want)
		}
	}
}

func TestClassifyFragment(t *testing.T) {
	tests := []struct {
		s    string
		want FragmentKind
	}{
		{"CONFIG_RUST=y", FragmentLine},
		{"# CONFIG_MODULES is not set", FragmentLine},
		{"#CONFIG_X is not set", FragmentLine}, // malformed, so Validate says how to write it
		{"CONFIG_X", FragmentLine},
		{"kvm_guest.config", FragmentInTree},
		{"rust.config", FragmentInTree},
		{"./rust.config", FragmentFile},
		{"/etc/x.config", FragmentFile},
		{"frags/debug.config", FragmentFile},
		{"debug.cfg", FragmentFile},
		{"config", FragmentFile},
	}
	for _, tt := range tests {
		if got := ClassifyFragment(tt.s); got != tt.want {
			t.Errorf("ClassifyFragment(%q) = %d, want %d", tt.s, got, tt.want)
		}
	}
}

func TestFieldErrorMessage(t *testing.T) {
	c := Default()
	c.VM.Accel = "fast"
	if got, want := c.Validate().Error(), `vm.accel: "fast" is not one of auto, kvm, tcg`; got != want {
		t.Errorf("Validate() = %q, want %q", got, want)
	}
}
