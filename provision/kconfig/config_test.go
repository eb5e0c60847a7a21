package kconfig

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    [][2]string // symbol, value in order
		wantErr string
	}{
		{
			name: "all value kinds",
			in: "# comment\n\nCONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=n\n" +
				`CONFIG_E="console=ttyS0 \"q\" \\"` + "\nCONFIG_F=17\nCONFIG_G=-1\nCONFIG_H=0x1000000\nCONFIG_I=ffff\nCONFIG_J=\"\"\n",
			want: [][2]string{{"A", "y"}, {"B", "m"}, {"C", "n"}, {"D", "n"}, {"E", `"console=ttyS0 \"q\" \\"`},
				{"F", "17"}, {"G", "-1"}, {"H", "0x1000000"}, {"I", "ffff"}, {"J", `""`}},
		},
		{
			name: "whitespace, CRLF and help comments are tolerated",
			in:   "# Help: Bootable as a KVM guest\r\n  CONFIG_NET=y  \r\n\t# CONFIG_X is not set\r\n#CONFIG_Y is not set\n# CONFIG_Z is not set, really\n",
			want: [][2]string{{"NET", "y"}, {"X", "n"}},
		},
		{
			name: "last assignment wins and keeps the first position",
			in:   "CONFIG_A=y\nCONFIG_B=y\nCONFIG_A=m\n",
			want: [][2]string{{"A", "m"}, {"B", "y"}},
		},
		{name: "no prefix", in: "CONFIG_A=y\nRUST=y\n", wantErr: `line 2: cannot parse "RUST=y"`},
		{name: "no value", in: "CONFIG_RUST\n", wantErr: "line 1: cannot parse \"CONFIG_RUST\": missing =value"},
		{name: "bad value", in: "\n\nCONFIG_RUST=yes\n", wantErr: `line 3: cannot parse "CONFIG_RUST=yes": invalid value "yes"`},
		{name: "upper-case Y", in: "CONFIG_RUST=Y\n", wantErr: `invalid value "Y"`},
		{name: "empty value", in: "CONFIG_CMDLINE=\n", wantErr: "line 1: cannot parse \"CONFIG_CMDLINE=\": empty value"},
		{name: "unterminated string", in: `CONFIG_CMDLINE="abc` + "\n", wantErr: "unterminated string"},
		{name: "unescaped quote", in: `CONFIG_CMDLINE="a"b"` + "\n", wantErr: "unescaped quote"},
		{name: "bad name", in: "CONFIG_RU-ST=y\n", wantErr: "not a valid symbol name"},
		{name: "doubled prefix", in: "CONFIG_CONFIG_RUST=y\n", wantErr: "doubled CONFIG_ prefix"},
		{name: "doubled prefix, not set", in: "# CONFIG_CONFIG_RUST is not set\n", wantErr: "doubled CONFIG_ prefix"},
		{name: "trailing comment", in: "CONFIG_RUST=y # want rust\n", wantErr: `invalid value "y # want rust"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got [][2]string
			for _, s := range c.Symbols() {
				v, _ := c.Value(s)
				got = append(got, [2]string{s, v})
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestValueSetUnset(t *testing.T) {
	c := New()
	c.Set("CONFIG_RUST", "y")
	c.Set("HZ_1000", "y")
	c.Set("LOG_BUF_SHIFT", "17")
	c.Set("RUST", "n") // same symbol: updated in place
	for _, sym := range []string{"RUST", "CONFIG_RUST"} {
		if v, ok := c.Value(sym); !ok || v != "n" {
			t.Errorf("Value(%q) = %q, %v; want n, true", sym, v, ok)
		}
	}
	c.Unset("CONFIG_HZ_1000")
	if _, ok := c.Value("HZ_1000"); ok {
		t.Error("HZ_1000 still set after Unset")
	}
	if got, want := c.Symbols(), []string{"RUST", "LOG_BUF_SHIFT"}; !slices.Equal(got, want) {
		t.Errorf("Symbols() = %q, want %q", got, want)
	}
	if v, _ := c.Value("LOG_BUF_SHIFT"); v != "17" {
		t.Errorf("index broken after Unset: LOG_BUF_SHIFT = %q", v)
	}
	want := "# CONFIG_RUST is not set\nCONFIG_LOG_BUF_SHIFT=17\n"
	if got := string(c.Bytes()); got != want {
		t.Errorf("Bytes() = %q, want %q", got, want)
	}
	clone := c.Clone()
	clone.Set("RUST", "y")
	if v, _ := c.Value("RUST"); v != "n" {
		t.Error("Clone shares state with the original")
	}
}

func TestRoundTrip(t *testing.T) {
	files, err := filepath.Glob("testdata/tree/*/configs/*.config")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixture configs: %v", err)
	}
	inputs := map[string][]byte{
		"all kinds":  []byte("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\nCONFIG_D=\"x\\\"y\"\nCONFIG_E=0x10\nCONFIG_F=-3\n"),
		"CONFIG_N=n": []byte("CONFIG_N=n\n"),
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs[f] = data
	}
	for name, data := range inputs {
		t.Run(name, func(t *testing.T) {
			checkRoundTrip(t, data)
		})
	}
}

// checkRoundTrip fails if a config parsed from data does not survive
// Bytes and Parse unchanged, or if serializing it is not stable.
func checkRoundTrip(t *testing.T, data []byte) {
	t.Helper()
	c, err := Parse(bytes.NewReader(data))
	if err != nil {
		return
	}
	b := c.Bytes()
	if again, clone := c.Bytes(), c.Clone().Bytes(); !bytes.Equal(b, again) || !bytes.Equal(b, clone) {
		t.Fatalf("Bytes is not stable:\n%q\n%q\n%q (clone)", b, again, clone)
	}
	if n := bytes.Count(b, []byte("\n")); n != c.Len() {
		t.Fatalf("Bytes has %d lines for %d symbols:\n%s", n, c.Len(), b)
	}
	c2, err := Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Parse(Bytes()) failed: %v\n%s", err, b)
	}
	if b2 := c2.Bytes(); !bytes.Equal(b, b2) {
		t.Fatalf("Bytes differ after a round trip:\n%q\n%q", b, b2)
	}
	// Bytes assigns each symbol once, so even the strict fragment parser
	// takes it.
	if _, err := ParseFragment("round-trip", b); err != nil {
		t.Fatalf("ParseFragment(Bytes()) failed: %v\n%s", err, b)
	}
	if !slices.Equal(c.Symbols(), c2.Symbols()) {
		t.Fatalf("symbol order changed:\n%q\n%q", c.Symbols(), c2.Symbols())
	}
	if c.Hash() != c2.Hash() {
		t.Fatal("Hash differs after a round trip")
	}
	for _, s := range c.Symbols() {
		v1, _ := c.Value(s)
		v2, ok := c2.Value(s)
		if !ok || v1 != v2 {
			t.Fatalf("%s: %q became %q", s, v1, v2)
		}
	}
}

func FuzzParseRoundTrip(f *testing.F) {
	f.Add([]byte("CONFIG_RUST=y\n# CONFIG_MODVERSIONS is not set\nCONFIG_LOG_BUF_SHIFT=17\n"))
	f.Add([]byte("CONFIG_CMDLINE=\"console=ttyS0 \\\"x\\\"\"\r\n# comment\n\nCONFIG_X=n\n"))
	f.Add([]byte("CONFIG_A=0xFF\nCONFIG_A=m\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data)
	})
}

func TestHash(t *testing.T) {
	parse := func(s string) *Config {
		c, err := Parse(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := parse("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x\"\n")
	tests := []struct {
		name string
		b    string
		same bool
	}{
		{"identical", "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x\"\n", true},
		{"other order and comments", "# hello\nCONFIG_C=\"x\"\n\nCONFIG_B=n\nCONFIG_A=y\n", true},
		{"a value differs", "CONFIG_A=m\n# CONFIG_B is not set\nCONFIG_C=\"x\"\n", false},
		{"not set differs from absent", "CONFIG_A=y\nCONFIG_C=\"x\"\n", false},
		{"an extra symbol", "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x\"\nCONFIG_D=y\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if same := a.Hash() == parse(tt.b).Hash(); same != tt.same {
				t.Errorf("equal hashes = %v, want %v", same, tt.same)
			}
		})
	}
	if h := a.Hash(); len(h) != 64 {
		t.Errorf("Hash() = %q, want 64 hex digits", h)
	}
}

func TestDiff(t *testing.T) {
	base, err := Parse(strings.NewReader("CONFIG_A=y\nCONFIG_B=14\n# CONFIG_C is not set\nCONFIG_D=y\nCONFIG_E=m\n"))
	if err != nil {
		t.Fatal(err)
	}
	final, err := Parse(strings.NewReader("CONFIG_Z=y\nCONFIG_B=17\nCONFIG_A=y\nCONFIG_E=n\n# CONFIG_F is not set\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := Diff(base, final)
	want := []Change{
		{Symbol: "B", Old: "14", New: "17"},
		{Symbol: "D", Old: "y", New: ""},
		{Symbol: "E", Old: "m", New: "n"},
		{Symbol: "Z", Old: "", New: "y"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Diff = %q\nwant %q", got, want)
	}
	var lines []string
	for _, c := range got {
		lines = append(lines, c.String())
	}
	if s, w := strings.Join(lines, ","), "CONFIG_B: 14 -> 17,-CONFIG_D=y,CONFIG_E: m -> n,+CONFIG_Z=y"; s != w {
		t.Errorf("String() = %q, want %q", s, w)
	}
}
