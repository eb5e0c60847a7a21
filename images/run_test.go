package images

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestBwrapArgs(t *testing.T) {
	t.Setenv("PATH", "/home/u/.cargo/bin:/usr/bin")
	opt := RunOptions{
		Binds: []Bind{{Host: "/src/mod", Guest: "/work"}, {Host: "/cache/k", Guest: "/kdir", ReadOnly: true}},
		Dir:   "/work",
		Env:   []string{"LLVM=1", "EMPTY="},
	}
	got, err := bwrapArgs("/cache/roots/h/root", false, false, nil, opt, []string{"make", "-j2"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"--bind", "/cache/roots/h/root", "/",
		"--proc", "/proc", "--dev", "/dev", "--ro-bind", "/sys", "/sys", "--tmpfs", "/tmp",
		"--unshare-pid", "--die-with-parent", "--clearenv",
		"--setenv", "HOME", "/root", "--setenv", "PATH", GuestPath, "--setenv", "LANG", "C.UTF-8",
		"--setenv", "LLVM", "1", "--setenv", "EMPTY", "",
		"--bind", "/src/mod", "/work", "--ro-bind", "/cache/k", "/kdir",
		"--chdir", "/work", "--", "make", "-j2",
	}
	if !slices.Equal(got, want) {
		t.Errorf("bwrapArgs:\n got %q\nwant %q", got, want)
	}
	if strings.Contains(strings.Join(got, " "), ".cargo") {
		t.Errorf("host PATH leaked into %q", got)
	}
}

func TestBwrapArgsReadOnlyAndDefaults(t *testing.T) {
	got, err := bwrapArgs("/r", true, false, []string{"--tmpfs", "/run"}, RunOptions{}, []string{"true"})
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Join(got, " ")
	for _, want := range []string{"--ro-bind /r / ", "--tmpfs /run --chdir / -- true"} {
		if !strings.Contains(s, want) {
			t.Errorf("args %q lack %q", s, want)
		}
	}
}

// TestCommandReadOnlyRoot: a read-only root is bound with --ro-bind, and its tmpfs come
// before the binds whose mount points they hold.
func TestCommandReadOnlyRoot(t *testing.T) {
	r := &Root{Dir: "/r"}
	cmd := r.Command(context.Background(), RunOptions{
		ReadOnlyRoot: true, Tmpfs: []string{"/root", "/usr/src"},
		Binds: []Bind{{Host: "/k", Guest: "/usr/src/linux", ReadOnly: true}, {Host: "/m", Guest: "/root/m"}},
	}, "make")
	s := strings.Join(cmd.Args, " ")
	for _, want := range []string{"--ro-bind /r / ", "--tmpfs /root --tmpfs /usr/src --ro-bind /k /usr/src/linux --bind /m /root/m "} {
		if !strings.Contains(s, want) {
			t.Errorf("args %q lack %q", s, want)
		}
	}
	if cmd.Err != nil {
		t.Errorf("Command: %v", cmd.Err)
	}
}

func TestBwrapArgsErrors(t *testing.T) {
	tests := []struct {
		name string
		root string
		opt  RunOptions
		argv []string
	}{
		{"no command", "/r", RunOptions{}, nil},
		{"relative root", "r", RunOptions{}, []string{"true"}},
		{"bad env", "/r", RunOptions{Env: []string{"NOEQUALS"}}, []string{"true"}},
		{"relative bind", "/r", RunOptions{Binds: []Bind{{Host: "src", Guest: "/src"}}}, []string{"true"}},
		{"relative dir", "/r", RunOptions{Dir: "work"}, []string{"true"}},
		{"relative tmpfs", "/r", RunOptions{Tmpfs: []string{"root"}}, []string{"true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := bwrapArgs(tt.root, false, false, nil, tt.opt, tt.argv); err == nil {
				t.Errorf("no error")
			}
		})
	}
}

func TestCommandInvalidOptionsFailsStart(t *testing.T) {
	r := &Root{Dir: "/nonexistent"}
	cmd := r.Command(context.Background(), RunOptions{Env: []string{"BAD"}}, "true")
	if err := cmd.Start(); err == nil || !strings.Contains(err.Error(), "KEY=VALUE") {
		t.Fatalf("Start() = %v, want the option error", err)
	}
}

func TestFirstLine(t *testing.T) {
	for in, want := range map[string]string{
		"rustc 1.97.1 (x)\n":                     "rustc 1.97.1 (x)",
		"\n  Debian clang version 21\nTarget: x": "Debian clang version 21",
		"":                                       "",
	} {
		if got := firstLine(in); got != want {
			t.Errorf("firstLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// As an ordinary user bwrap makes a user namespace whose root is the user: commands see the
// root's files as root's, as the build did.
func TestBwrapArgsUserNamespace(t *testing.T) {
	got, err := bwrapArgs("/r", true, true, nil, RunOptions{}, []string{"id", "-u"})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.Index(got, "--unshare-user")
	if i < 0 || !slices.Equal(got[i:i+5], []string{"--unshare-user", "--uid", "0", "--gid", "0"}) {
		t.Errorf("bwrapArgs as a user: %q has no --unshare-user --uid 0 --gid 0", got)
	}
	if slices.Index(got, "--") < i {
		t.Errorf("bwrapArgs as a user: the namespace options come after the command: %q", got)
	}
	root, _ := bwrapArgs("/r", true, false, nil, RunOptions{}, []string{"id", "-u"})
	if slices.Contains(root, "--unshare-user") {
		t.Errorf("bwrapArgs as root: %q makes a user namespace", root)
	}
}

// The error of a failed mmdebstrap | tar pipe names the side that caused it.
func TestCulprit(t *testing.T) {
	failed := errors.New("exit status 2")
	cases := []struct {
		name          string
		mmErr, tarErr error
		tarTail       string
		want          string
	}{
		{"both fine", nil, nil, "", ""},
		{"a package apt cannot find: tar gets no archive", failed, failed, "tar: This does not look like a tar archive\ntar: Exiting with failure status due to previous errors", "mmdebstrap"},
		{"mmdebstrap dies mid-stream", failed, failed, "tar: Unexpected EOF in archive", "mmdebstrap"},
		{"a full disk: tar fails, mmdebstrap gets SIGPIPE", failed, failed, "tar: ./usr/bin/clang-21: Cannot write: No space left on device", "tar"},
		{"mmdebstrap alone", failed, nil, "", "mmdebstrap"},
		{"tar alone", nil, failed, "tar: Cannot open: Permission denied", "tar"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := culprit(c.mmErr, c.tarErr, c.tarTail); got != c.want {
				t.Errorf("culprit = %q, want %q", got, c.want)
			}
		})
	}
}
