package module

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/images"
)

// fakeToolchain runs argv in place of the module build, ignoring the toolchain root.
type fakeToolchain struct{ argv []string }

func (f fakeToolchain) Command(ctx context.Context, _ images.RunOptions, _ ...string) *exec.Cmd {
	return exec.CommandContext(ctx, f.argv[0], f.argv[1:]...)
}

func moduleDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Kbuild"), []byte("obj-m := a.o\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A host build interrupted (Ctrl-C, SIGTERM, a deadline) is an error wrapping the context's,
// never a build that failed: make killed by the cancellation says nothing about the module.
func TestHostBuildInterrupted(t *testing.T) {
	cases := []struct {
		name    string
		argv    []string
		ctx     func() (context.Context, context.CancelFunc)
		wantErr error // nil: a BuildResult, no error
		wantOK  bool
	}{
		{"cancelled during make", []string{"sleep", "30"}, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(200*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled, false},
		{"deadline during make", []string{"sleep", "30"}, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 200*time.Millisecond)
		}, context.DeadlineExceeded, false},
		{"cancelled before it starts", []string{"sleep", "30"}, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, context.Canceled, false},
		{"make fails, not interrupted", []string{"sh", "-c", "echo 'a.c:1: error' >&2; exit 2"}, func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := c.ctx()
			defer cancel()
			r := &Runner{Toolchain: fakeToolchain{c.argv}, KDir: t.TempDir()}
			opt := Options{Source: Source{Dir: moduleDir(t)}, BuildDir: filepath.Join(t.TempDir(), "build")}
			start := time.Now()
			b := r.hostBuild(ctx, opt, RemoteDir(opt.Source.Dir))
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %s: the cancellation did not stop the build", d)
			}
			if c.wantErr == nil {
				if b.err != nil {
					t.Fatalf("err = %v, want a build result", b.err)
				}
				if b.result.OK != c.wantOK {
					t.Errorf("OK = %v, want %v", b.result.OK, c.wantOK)
				}
				return
			}
			if !errors.Is(b.err, c.wantErr) {
				t.Fatalf("err = %v, want one wrapping %v (result %+v)", b.err, c.wantErr, b.result)
			}
		})
	}
}

// Run, interrupted while the host build compiles and the guest is being reached, returns an
// error wrapping context.Canceled and no Result (so no build-failed verdict, exit 3).
func TestRunInterruptedDuringHostBuild(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &Runner{
		Toolchain: fakeToolchain{[]string{"sleep", "30"}},
		KDir:      t.TempDir(),
		Connect: func(ctx context.Context) (Guest, error) {
			time.AfterFunc(200*time.Millisecond, cancel)
			<-ctx.Done()
			return nil, errors.New("dial the guest: connection refused") // what a dialer might say
		},
	}
	opt := Options{Source: Source{Dir: moduleDir(t)}, Where: BuildHost, BuildDir: filepath.Join(t.TempDir(), "build")}
	res, err := r.Run(ctx, opt)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want one wrapping context.Canceled", err)
	}
	if res != nil {
		t.Errorf("res = %+v (verdict %q), want none", res, res.Verdict)
	}
}

func TestInterrupted(t *testing.T) {
	live := context.Background()
	dead, cancel := context.WithCancel(live)
	cancel()
	other := errors.New("exit status 2")
	if err := interrupted(live, "x", other); err != other {
		t.Errorf("live: %v", err)
	}
	if err := interrupted(live, "x", nil); err != nil {
		t.Errorf("live, nil: %v", err)
	}
	if err := interrupted(dead, "x", other); !errors.Is(err, context.Canceled) {
		t.Errorf("dead: %v", err)
	}
	if err := interrupted(dead, "x", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("dead, nil: %v", err)
	}
}
