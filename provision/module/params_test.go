package module

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// kparam is one parameter as the kernel's parser hands it to the module loader.
type kparam struct {
	name, value string
	hasValue    bool
}

func (p kparam) String() string {
	if !p.hasValue {
		return strconv.Quote(p.name)
	}
	return p.name + "=" + strconv.Quote(p.value)
}

// kernelParseArgs is the kernel's parse_args loop over next_arg (lib/cmdline.c), ported
// statement by statement, NUL bytes written into the buffer included: it splits the string
// init_module receives (insmod's arguments joined with spaces) into parameters.
func kernelParseArgs(s string) []kparam {
	buf := append([]byte(s), 0)
	var out []kparam
	args := skipSpaces(buf, 0)
	for buf[args] != 0 {
		var p kparam
		p, args = nextArg(buf, args)
		out = append(out, p)
	}
	return out
}

func nextArg(buf []byte, args int) (kparam, int) {
	i, equals := 0, 0
	inQuote, quoted := false, false
	if buf[args] == '"' {
		args++
		inQuote, quoted = true, true
	}
	for ; buf[args+i] != 0; i++ {
		if kernelSpace(buf[args+i]) && !inQuote {
			break
		}
		if equals == 0 && buf[args+i] == '=' {
			equals = i
		}
		if buf[args+i] == '"' {
			inQuote = !inQuote
		}
	}
	param, val := args, -1
	if equals != 0 {
		buf[args+equals] = 0
		val = args + equals + 1
		if buf[val] == '"' { // don't include quotes in value
			val++
			if buf[args+i-1] == '"' {
				buf[args+i-1] = 0
			}
		}
	}
	if quoted && i > 0 && buf[args+i-1] == '"' {
		buf[args+i-1] = 0
	}
	if buf[args+i] != 0 {
		buf[args+i] = 0
		args += i + 1
	} else {
		args += i
	}
	p := kparam{name: cString(buf, param)}
	if val >= 0 {
		p.value, p.hasValue = cString(buf, val), true
	}
	return p, skipSpaces(buf, args)
}

func skipSpaces(buf []byte, i int) int {
	for kernelSpace(buf[i]) {
		i++
	}
	return i
}

func cString(buf []byte, i int) string {
	n := 0
	for buf[i+n] != 0 {
		n++
	}
	return string(buf[i : i+n])
}

// TestKernelParseArgsPort checks the port on the kernel's documented behaviour.
func TestKernelParseArgsPort(t *testing.T) {
	got := kernelParseArgs(`  a=1 b="x y" flag "c=in quotes" d= e=x"y z"w`)
	want := []kparam{
		{"a", "1", true}, {"b", "x y", true}, {"flag", "", false}, {"c", "in quotes", true},
		{"d", "", true}, {"e", `x"y z"w`, true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("parse = %v, want %v", got, want)
	}
}

var paramValues = []struct {
	name, value string
	want        string // what the module gets; "" means value itself
}{
	{name: "plain", value: "world"},
	{name: "empty", value: ""},
	{name: "spaces", value: "hello  world"},
	{name: "leading and trailing spaces", value: "  both  "},
	{name: "tab, newline, vertical tab, form feed, CR", value: "a\tb\nc\vd\fe\rf"},
	{name: "utf-8 with a 0xA0 byte", value: "voilà, über"},
	{name: "shell syntax", value: "it's; $(touch /tmp/pwned) `id` | & > < * ~ \\ $HOME"},
	{name: "equals signs", value: "a=b=c"},
	{name: "already quoted for the kernel", value: `"hello world"`, want: "hello world"},
	{name: "empty quotes", value: `""`, want: ""},
}

// TestParamWordReachesTheKernel: for each value, the word ParamWord makes, joined with the
// other words as insmod joins them, parses back in the kernel into exactly that value, and
// the parameter after it is untouched.
func TestParamWordReachesTheKernel(t *testing.T) {
	for _, tt := range paramValues {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.value
			if tt.want != "" || tt.value == `""` {
				want = tt.want
			}
			words, err := ParamWords([]string{"whom=" + tt.value, "n=2", "debug"})
			if err != nil {
				t.Fatalf("ParamWords: %v", err)
			}
			got := kernelParseArgs(strings.Join(words, " "))
			wantParams := []kparam{{"whom", want, true}, {"n", "2", true}, {"debug", "", false}}
			if !slices.Equal(got, wantParams) {
				t.Errorf("words %q reach the kernel as %v, want %v", words, got, wantParams)
			}
		})
	}
}

func TestParamWordRefuses(t *testing.T) {
	for _, p := range []string{`msg=say "hi"`, `msg="`, `msg=a"`, `msg="a`, `msg="a"b"`, `msg=""x"`, `a b`, `a"b`} {
		_, err := ParamWord(p)
		if err == nil {
			t.Errorf("ParamWord(%q) = nil error, want a refusal", p)
			continue
		}
		if !strings.Contains(err.Error(), "hint:") {
			t.Errorf("ParamWord(%q) error %q has no hint", p, err)
		}
	}
}

// TestParamsThroughShellAndInsmod runs the real load step in the fake guest with an insmod that
// joins its parameter arguments with spaces, as kmod's insmod does, and feeds the result to
// the kernel's parser: every value arrives exactly, and no shell syntax in it ran.
func TestParamsThroughShellAndInsmod(t *testing.T) {
	g := newFakeGuest(t)
	g.write("insmod.sh", `shift; printf '%s' "$*" > "$G/init_module-args"`, 0o644)
	canary := filepath.Join(g.dir, "pwned")
	var params []string
	var want []kparam
	for i, tt := range paramValues {
		v := strings.ReplaceAll(tt.value, "/tmp/pwned", canary)
		name := "p" + string(rune('a'+i))
		params = append(params, name+"="+v)
		if tt.want != "" || tt.value == `""` {
			v = tt.want
		}
		want = append(want, kparam{name, v, true})
	}
	words, err := ParamWords(params)
	if err != nil {
		t.Fatal(err)
	}
	r := g.runner(nil)
	r.guest = g
	st, err := r.step(testCtx(t), Options{Timeout: time.Minute}, "load", "m", 1, append([]string{"*.*", "m", "/root/kmodvm/src/m/m.ko"}, words...)...)
	if err != nil || !st.OK {
		t.Fatalf("load step %+v: %v", st, err)
	}
	if got := kernelParseArgs(g.read("init_module-args")); !slices.Equal(got, want) {
		t.Errorf("the kernel would get\n%v\nwant\n%v", got, want)
	}
	if _, err := os.Stat(canary); err == nil {
		t.Error("a parameter value was run by the shell")
	}
}
