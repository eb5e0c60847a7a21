package kconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/vm/golden"
)

// TestVerify reads testdata/verify/<case>/requested.config and final.config,
// verifies them against the fake tree's Kconfig (or none when the case has a
// "nokconfig" file), and compares the error text with <case>/want.golden.
func TestVerify(t *testing.T) {
	kc := loadFake(t)
	cases, err := os.ReadDir("testdata/verify")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name(), func(t *testing.T) {
			dir := filepath.Join("testdata/verify", c.Name())
			read := func(name string) *Config {
				data, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				f, err := ParseFragment(name, data)
				if err != nil {
					t.Fatal(err)
				}
				return f.Config
			}
			k := kc
			if _, err := os.Stat(filepath.Join(dir, "nokconfig")); err == nil {
				k = nil
			}
			r := Verify(read("requested.config"), read("final.config"), k)
			err := r.Err()
			if err == nil {
				t.Fatal("Verify found no problem; every case here has some")
			}
			golden.Check(t, filepath.Join(dir, "want.golden"), []byte(err.Error()+"\n"))
		})
	}
}

func TestVerifyProblems(t *testing.T) {
	kc := loadFake(t)
	parse := func(s string) *Config {
		c, err := Parse(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name, requested, final string
		want                   []string // "SYMBOL want got", one per problem
	}{
		{name: "everything survived", requested: "CONFIG_RUST=y\n# CONFIG_MODVERSIONS is not set\nCONFIG_LOG_BUF_SHIFT=17\n",
			final: "CONFIG_RUST=y\nCONFIG_LOG_BUF_SHIFT=17\n"},
		{name: "n is satisfied by not set", requested: "# CONFIG_MODVERSIONS is not set\n", final: "# CONFIG_MODVERSIONS is not set\n"},
		{name: "n is violated by m", requested: "# CONFIG_VIRTIO is not set\n", final: "CONFIG_VIRTIO=m\n", want: []string{"VIRTIO n m"}},
		{name: "y is violated by m", requested: "CONFIG_VIRTIO=y\n", final: "CONFIG_VIRTIO=m\n", want: []string{"VIRTIO y m"}},
		{name: "strings compare verbatim", requested: "CONFIG_CMDLINE=\"a\"\n", final: "CONFIG_CMDLINE=\"a \"\n", want: []string{"CMDLINE \"a\" \"a \""}},
		{name: "several, in request order", requested: "CONFIG_RUST=y\nCONFIG_HZ_1000=y\n", final: "",
			want: []string{"RUST y ", "HZ_1000 y "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Verify(parse(tt.requested), parse(tt.final), kc)
			var got []string
			for _, p := range r.Problems {
				got = append(got, fmt.Sprintf("%s %s %s", p.Symbol, p.Want, p.Got))
				if p.Reason == "" {
					t.Errorf("%s: empty reason", p.Symbol)
				}
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("problems %q, want %q", got, tt.want)
			}
			if (r.Err() == nil) != (len(tt.want) == 0) {
				t.Errorf("Err() = %v with %d problems", r.Err(), len(tt.want))
			}
		})
	}
}

func TestReportErrStep(t *testing.T) {
	r := Report{Step: "make allnoconfig", Problems: []Problem{{Symbol: "RUST", Want: "y", Reason: "depends on: X [=n]"}}}
	want := "kernel config verification failed: 1 requested option did not survive `make allnoconfig`:\n" +
		"  CONFIG_RUST: want y, got (unset) — depends on: X [=n]\n"
	if err := r.Err(); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Err() = %v\nwant prefix %q", err, want)
	}
}

func TestCheck(t *testing.T) {
	kc := loadFake(t)
	req, err := ParseFragment("user.config", []byte(strings.Join([]string{
		"CONFIG_RUST=y",
		"CONFIG_RSUT=y",
		"CONFIG_ARM64_PTR_AUTH=y",
		"CONFIG_MODVERSIONS=m",
		"CONFIG_VIRTIO=m",
		"CONFIG_VIRTIO_NET=17",
		"CONFIG_LOG_BUF_SHIFT=y",
		"CONFIG_LOG_BUF_SHIFT_OK=y",
		"CONFIG_HZ=0x10",
		"CONFIG_CMDLINE=17",
		"CONFIG_CMDLINE_OK=\"quiet\"",
		"# CONFIG_LOG_BUF_SHIFT_OFF is not set",
	}, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"RSUT: unknown symbol: no Kconfig file in the kernel tree defines it (did you mean RUST?)",
		"ARM64_PTR_AUTH: only defined for arch/arm64, not for arch/x86 (arch/arm64/Kconfig:6)",
		"MODVERSIONS: is a bool: it can be y or n, not m",
		"VIRTIO_NET: is a tristate: its value must be y, m or n",
		"LOG_BUF_SHIFT: is an int: its value must be a number",
		"LOG_BUF_SHIFT_OK: unknown symbol: no Kconfig file in the kernel tree defines it (did you mean LOG_BUF_SHIFT?)",
		"CMDLINE: is a string: quote its value, e.g. \"...\"",
		"CMDLINE_OK: unknown symbol: no Kconfig file in the kernel tree defines it",
		"LOG_BUF_SHIFT_OFF: unknown symbol: no Kconfig file in the kernel tree defines it",
	}
	var got []string
	for _, p := range Check(req.Config, kc).Problems {
		got = append(got, p.Symbol+": "+p.Reason)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Check problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantErr := "kernel config check failed: 9 requested options cannot be set in this kernel tree:\n" +
		"  CONFIG_RSUT=y — unknown symbol: no Kconfig file in the kernel tree defines it (did you mean RUST?) (requested in user.config:2)\n"
	if err := Check(req.Config, kc).Err(); err == nil || !strings.HasPrefix(err.Error(), wantErr) {
		t.Errorf("Err() = %v\nwant prefix %q", err, wantErr)
	}
	if r := Check(req.Config, nil); len(r.Problems) != 0 {
		t.Errorf("Check without Kconfig found %d problems", len(r.Problems))
	}
}

// Blocker says what keeps a fragment line from taking effect, and nothing when asking is
// enough.
func TestBlocker(t *testing.T) {
	kc := loadFake(t)
	final, err := Parse(strings.NewReader("CONFIG_PRINTK=y\nCONFIG_NET=y\n# CONFIG_NETDEVICES is not set\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sym, want string
		kc        *Kconfig
		reason    string // a prefix; "" for none
		fixes     []string
	}{
		{sym: "CONFIG_EXPERT", want: "y", kc: kc},
		{sym: "CONFIG_VIRTIO_NET", want: "y", kc: kc, reason: "depends on: NETDEVICES [=n] && VIRTIO [=n]",
			fixes: []string{"`CONFIG_NETDEVICES=y`", "`CONFIG_VIRTIO=y`"}},
		{sym: "CONFIG_RUST_DEBUG_ASSERTIONS", want: "y", kc: kc, reason: "depends on: RUST [=n]", fixes: []string{"`CONFIG_RUST=y`"}},
		{sym: "CONFIG_LTO", want: "y", kc: kc, reason: "has no prompt, so a user cannot set it; only a select turns it on"},
		{sym: "CONFIG_NO_SUCH_THING", want: "y", kc: kc, reason: "unknown symbol"},
		{sym: "CONFIG_VIRTIO_NET", want: "y", kc: nil},
	}
	for _, tt := range tests {
		reason, fixes := Blocker(tt.sym, tt.want, final, tt.kc)
		if tt.reason == "" && reason != "" || !strings.HasPrefix(reason, tt.reason) {
			t.Errorf("Blocker(%s=%s) = %q, want %q", tt.sym, tt.want, reason, tt.reason)
		}
		if strings.Join(fixes, "|") != strings.Join(tt.fixes, "|") {
			t.Errorf("Blocker(%s=%s) fixes %q, want %q", tt.sym, tt.want, fixes, tt.fixes)
		}
	}
	if got := Assignment("CONFIG_X", "n"); got != "# CONFIG_X is not set" {
		t.Errorf("Assignment(X, n) = %q", got)
	}
	if got := Assignment("X", "y"); got != "CONFIG_X=y" {
		t.Errorf("Assignment(X, y) = %q", got)
	}
}
