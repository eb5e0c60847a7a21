package images

import (
	"slices"
	"strings"
	"testing"
)

func TestSpecHash(t *testing.T) {
	base := DefaultSpec()
	baseHash := base.Hash()
	if len(baseHash) != 64 {
		t.Fatalf("Hash() = %q, want 64 hex digits", baseHash)
	}
	with := func(f func(*Spec)) Spec {
		s := DefaultSpec()
		f(&s)
		return s
	}
	tests := []struct {
		name string
		spec Spec
		same bool
	}{
		{"identical", DefaultSpec(), true},
		{"zero value means defaults", Spec{}, true},
		{"mirror trailing slash", with(func(s *Spec) { s.Mirror += "/" }), true},
		{"extra already in base list", with(func(s *Spec) { s.Packages = []string{"rustc", "clang"} }), true},
		{"empty extra", with(func(s *Spec) { s.Packages = []string{"", " "} }), true},
		{"suite", with(func(s *Spec) { s.Suite = "trixie" }), false},
		{"mirror", with(func(s *Spec) { s.Mirror = "http://mirror.example/debian" }), false},
		{"extra package", with(func(s *Spec) { s.Packages = []string{"strace"} }), false},
		{"init", with(func(s *Spec) { s.Init = InitSystemd }), false},
		{"live mirror", with(func(s *Spec) { s.SnapshotMirror = false }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.spec.Hash()
			if (got == baseHash) != tt.same {
				t.Errorf("Hash() = %s, default = %s, want same=%v", got, baseHash, tt.same)
			}
		})
	}

	t.Run("extras order and duplicates", func(t *testing.T) {
		a := with(func(s *Spec) { s.Packages = []string{"strace", "gdb"} })
		b := with(func(s *Spec) { s.Packages = []string{"gdb", "strace", "gdb"} })
		if a.Hash() != b.Hash() {
			t.Errorf("order or duplicates of extras changed the hash")
		}
	})
	// Roots already cached were built with the default spec (which skipped the Valid-Until
	// check before it was a setting): a change to the default's hash rebuilds every root.
	// Format 2 (the unprivileged tar pipeline) changed it on purpose.
	t.Run("default hash is stable", func(t *testing.T) {
		const want = "d609c87caf624ec2541cc69e26f8f4fb1b2b331b7ec3670a5670b7168f935aac"
		if baseHash != want {
			t.Errorf("DefaultSpec().Hash() = %s, want %s", baseHash, want)
		}
		if got := (Spec{Suite: "trixie", SnapshotMirror: true}).Hash(); got != "71e83acd6d6597b6ec6d3dc2c65daebe7da3d515272189fdbc9bcee7ccd79d6d" {
			t.Errorf("trixie snapshot hash changed: %s", got)
		}
	})
	t.Run("format version", func(t *testing.T) {
		if base.hash(FormatVersion+1) == baseHash {
			t.Errorf("bumping the format version did not change the hash")
		}
	})
}

func TestPackageList(t *testing.T) {
	tests := []struct {
		name    string
		spec    Spec
		want    []string // must be present
		notWant []string
	}{
		{"default", DefaultSpec(), []string{"rustc", "rust-src", "bindgen", "clang", "lld", "openssh-server", "linux-source", "kmod", "mount", "libelf1t64"}, []string{"systemd-sysv"}},
		{"systemd", Spec{Init: InitSystemd}, []string{"systemd-sysv", "rustc"}, nil},
		{"extras", Spec{Packages: []string{"strace", "rustc", "strace"}}, []string{"strace"}, []string{"systemd-sysv"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.spec.PackageList()
			if !slices.IsSorted(got) {
				t.Errorf("not sorted: %v", got)
			}
			if len(slices.Compact(slices.Clone(got))) != len(got) {
				t.Errorf("duplicates: %v", got)
			}
			for _, p := range tt.want {
				if !slices.Contains(got, p) {
					t.Errorf("missing %s in %v", p, got)
				}
			}
			for _, p := range tt.notWant {
				if slices.Contains(got, p) {
					t.Errorf("unexpected %s in %v", p, got)
				}
			}
		})
	}
	if n := len(DefaultSpec().PackageList()); n != len(basePackages) {
		t.Errorf("default list has %d packages, base list %d", n, len(basePackages))
	}
}

func TestSpecValidate(t *testing.T) {
	tests := []struct {
		name    string
		spec    Spec
		wantErr string
	}{
		{"default", DefaultSpec(), ""},
		{"zero", Spec{}, ""},
		{"trixie systemd", Spec{Suite: "trixie", Init: InitSystemd}, ""},
		{"bad suite", Spec{Suite: "Sid Extra"}, "suite"},
		{"bad mirror", Spec{Mirror: "deb.debian.org"}, "mirror"},
		{"bad init", Spec{Init: "openrc"}, "init"},
		{"option as package", Spec{Packages: []string{"--foo"}}, "package"},
		{"comma in package", Spec{Packages: []string{"a,b"}}, "package"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "hint:") {
				t.Fatalf("Validate() = %v, want an error about %s with a hint", err, tt.wantErr)
			}
		})
	}
}

func TestMmdebstrapArgs(t *testing.T) {
	const validUntil = `--aptopt=Acquire::Check-Valid-Until "false"`
	tests := []struct {
		name string
		spec Spec
		want []string // after --format=tar, before --include
	}{
		{"snapshot mirror", Spec{Suite: "trixie", Mirror: DefaultMirror, SnapshotMirror: true, Packages: []string{"strace"}}, []string{validUntil}},
		{"default mirror by default", Spec{Suite: "trixie", Packages: []string{"strace"}}, []string{validUntil}},
		{"live mirror", Spec{Suite: "trixie", Mirror: "http://mirror.example/debian", Packages: []string{"strace"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mmdebstrapArgs(tt.spec)
			lead := []string{"--mode=unshare", "--variant=apt", "--format=tar"}
			want := append(slices.Clone(lead), tt.want...)
			want = append(want,
				"--include="+strings.Join(Spec{Packages: []string{"strace"}}.PackageList(), ","),
				"--dpkgopt=path-exclude=/usr/share/doc/*",
				"--dpkgopt=path-exclude=/usr/share/man/*",
				"--dpkgopt=path-exclude=/usr/share/locale/*",
				"trixie", "-", tt.spec.normalized().Mirror,
			)
			if !slices.Equal(got, want) {
				t.Errorf("mmdebstrapArgs:\n got %q\nwant %q", got, want)
			}
			if inc := got[len(lead)+len(tt.want)]; !strings.Contains(inc, ",strace,") {
				t.Errorf("extra package missing from %s", inc)
			}
		})
	}
}
