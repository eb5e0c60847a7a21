package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2EInterruptKernelAndDisk interrupts `kernel build` and `image build` of a kernel
// variant at each phase (config, make, modules_install, disk), and once SIGKILLs kmodvm
// mid-make, in the real cache: no partial entry may appear, no lock stay taken, no process
// outlive kmodvm, and the next build finishes from where the tree is, with no half-written
// target left in the tree. The variant differs from the tree's current config, so
// make has real work every run; its cache entries are removed afterwards.
func TestE2EInterruptKernelAndDisk(t *testing.T) {
	e2eEnv(t)
	paths := e2ePaths(t)
	builds := filepath.Join(paths.Cache, "kernels", "builds")
	disks := filepath.Join(paths.Cache, "images", "disks")

	// The variant: CONFIG_LOG_BUF_SHIFT differs from what the build tree has now.
	out := mustCLI(t, t.Context(), "kernel", "config", "--json")
	var kc struct{ Tree string }
	if err := json.Unmarshal([]byte(out), &kc); err != nil {
		t.Fatal(err)
	}
	current, _ := os.ReadFile(filepath.Join(kc.Tree, ".config"))
	shift := "16"
	if regexp.MustCompile(`(?m)^CONFIG_LOG_BUF_SHIFT=16$`).Match(current) {
		shift = "15"
	}
	cfg := filepath.Join(t.TempDir(), "kmodvm.yaml")
	os.WriteFile(cfg, []byte("kernel:\n  fragments: [\"CONFIG_LOG_BUF_SHIFT="+shift+"\"]\n"), 0o644)
	t.Logf("variant: CONFIG_LOG_BUF_SHIFT=%s", shift)

	entries := func(dir string) map[string]bool {
		m := map[string]bool{}
		for _, d := range subdirs(dir) {
			m[d] = true
		}
		return m
	}
	buildsBefore, disksBefore := entries(builds), entries(disks)
	// nothingLeft checks the cache after an interruption at phase; kernelDone: the kernel
	// build finished before (the disk phase), so its entry may be there.
	nothingLeft := func(phase string, kernelDone bool) {
		t.Helper()
		for _, dir := range []string{builds, disks, filepath.Join(paths.Cache, "images", "roots")} {
			if p := partialEntries(t, dir, 1); len(p) > 0 {
				t.Errorf("interrupted at %s: partial cache entries left: %v", phase, p)
			}
		}
		for e := range entries(builds) {
			if !buildsBefore[e] && !kernelDone {
				t.Errorf("interrupted at %s: a kernel cache entry %s appeared", phase, e)
			}
		}
		for e := range entries(disks) {
			if !disksBefore[e] {
				t.Errorf("interrupted at %s: a disk cache entry %s appeared", phase, e)
			}
		}
		locks, _ := filepath.Glob(filepath.Join(paths.Cache, "kernels", "trees", "*.lock"))
		for _, l := range locks {
			if f, err := os.Open(l); err == nil {
				if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
					t.Errorf("interrupted at %s: the tree lock %s is still held", phase, l)
				}
				f.Close()
			}
		}
	}

	// kmodvm SIGKILLed mid-make cannot stop make gently: make dies with it (bwrap's
	// --die-with-parent) and may leave targets half-written with fresh mtimes; the tree keeps
	// its in-progress marker and the next build removes them, saying so.
	recovered := "stopped before it could clean up; removed "
	// The kill lands once make has written into the tree since the in-progress marker: the
	// next build then has something to remove. Only make's targets count, not the
	// temporaries others delete themselves, so that a kill that lands after they went finds
	// nothing left to remove: rustc's codegen units (CRATE.CRATE.HASH-cgu.N.rcgu.o), deleted
	// once it links the crate, and kbuild's compiler probes (cc-option and the like write
	// .tmp_PID/tmp.o and remove the directory at once).
	marker := filepath.Join(kc.Tree, ".kmodvm-building")
	var written string // the object found, for the report if the recovery misses it
	wroteSinceMarker := func() bool {
		out, _ := exec.Command("find", kc.Tree, "-newer", marker, "-name", "*.o", "!", "-name", "*.rcgu.o", "!", "-path", "*/.tmp_*", "-type", "f", "-print", "-quit").Output()
		written = strings.TrimSpace(string(out))
		return written != ""
	}
	// describe says what is on disk of the object found and of the marker: their mtimes.
	describe := func() string {
		var b strings.Builder
		for _, p := range []string{written, marker} {
			if st, err := os.Stat(p); err != nil {
				fmt.Fprintf(&b, "\n  %s: %v", p, err)
			} else {
				fmt.Fprintf(&b, "\n  %s: %d bytes, mtime %s", p, st.Size(), st.ModTime().Format(time.RFC3339Nano))
			}
		}
		return b.String()
	}
	steps := []struct {
		phase, marker string
		at            landing
		sig           syscall.Signal
		cmd           []string
		wantSaid      string // printed by this run
	}{
		{"config", "==> kernel: generating .config", atOnce, syscall.SIGINT, []string{"kernel", "build"}, ""},
		{"make", "==> kernel: make LLVM=1", whenTrue("a compiler runs", hostNamed("clang", "rustc")), syscall.SIGTERM, []string{"kernel", "build"}, ""},
		{"make, kmodvm killed", "==> kernel: make LLVM=1", whenTrue("make has written an object since the build began", wroteSinceMarker), syscall.SIGKILL, []string{"kernel", "build"}, ""},
		{"modules_install", "==> kernel: modules_install", atOnce, syscall.SIGINT, []string{"image", "build"}, recovered},
		{"disk", "==> staging the root", whenTrue("the disk is being staged or packed", hostNamed("cp", "mkfs.ext4", "qemu-img")), syscall.SIGTERM, []string{"image", "build"}, ""},
	}
	for _, s := range steps {
		p, code := interruptAt(t, nil, s.marker, 30*time.Minute, s.at, s.sig, append([]string{"--config", cfg}, s.cmd...)...)
		want := 130
		if s.sig == syscall.SIGKILL {
			want = 128 + int(syscall.SIGKILL)
		}
		if code != want {
			t.Errorf("%s stopped at %s with %s: exit %d, want %d", strings.Join(s.cmd, " "), s.phase, s.sig, code, want)
		}
		if s.wantSaid != "" && !strings.Contains(p.stderr.String()+p.stdout.String(), s.wantSaid) {
			t.Errorf("%s at %s did not say %q", strings.Join(s.cmd, " "), s.phase, s.wantSaid)
		}
		if s.sig == syscall.SIGKILL {
			t.Logf("killed once make had written %s; now:%s", written, describe())
		}
		if s.wantSaid == recovered && regexp.MustCompile(`removed 0 files`).MatchString(p.stderr.String()) {
			t.Errorf("%s at %s removed nothing, though make had written %s when kmodvm was killed; now:%s", strings.Join(s.cmd, " "), s.phase, written, describe())
		}
		nothingLeft(s.phase, s.phase == "disk")
	}

	// The next build finishes; its entries are removed again (they are this test's).
	code, out, _ := runKmodvm(t, 30*time.Minute, nil, "--config", cfg, "image", "build")
	m := regexp.MustCompile(`(?m)^kernel: \S+ \((\S+)\)\ndisk:   (\S+)$`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("image build after the interruptions: exit %d, output %q", code, out)
	}
	for _, dir := range []string{m[1], filepath.Dir(m[2])} {
		if !strings.HasPrefix(dir, builds+"/") && !strings.HasPrefix(dir, disks+"/") {
			t.Fatalf("unexpected cache entry path %s", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
		os.Remove(dir + ".lock")
	}
	// The tree is sound for the next variant: no marker, no empty generated bindings.
	if _, err := os.Stat(filepath.Join(kc.Tree, ".kmodvm-building")); !os.IsNotExist(err) {
		t.Errorf("the in-progress marker is still in %s after a complete build", kc.Tree)
	}
	if fi, err := os.Stat(filepath.Join(kc.Tree, "rust/uapi/uapi_generated.rs")); err != nil || fi.Size() == 0 {
		t.Errorf("rust/uapi/uapi_generated.rs after the build: %v, %v", fi, err)
	}
}

// TestE2EInterruptRootAndFullCache builds a toolchain root in an empty cache on a small
// tmpfs: interrupted during mmdebstrap, then out of space, then with room and interrupted
// when the kernel source is being unpacked. Each time: a clear exit, no partial root, nothing
// left mounted, no process left; the root finishes once there is room.
func TestE2EInterruptRootAndFullCache(t *testing.T) {
	e2eEnv(t)
	home := t.TempDir()
	mount := func(opts string) {
		t.Helper()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "kmodvm-e2e", home).CombinedOutput(); err != nil {
			t.Fatalf("mount tmpfs: %v\n%s", err, out)
		}
	}
	mount("size=8g")
	t.Cleanup(func() { exec.Command("umount", "-l", home).Run() })
	env := []string{"KMODVM_HOME=" + home}
	roots := filepath.Join(home, "cache", "images", "roots")
	noPartialRoot := func(phase string) {
		t.Helper()
		if p := partialEntries(t, filepath.Join(home, "cache"), 3); len(p) > 0 {
			t.Errorf("%s: partial entries left: %v", phase, p)
		}
		if m := mountsBelow(t, home); len(m) != 1 {
			t.Errorf("%s: mounts left inside the cache: %v", phase, m[1:])
		}
		if out, err := exec.Command("pgrep", "-af", home).Output(); err == nil {
			t.Errorf("%s: processes still work in the cache:\n%s", phase, out)
		}
	}

	// Interrupted while mmdebstrap downloads and unpacks.
	if _, code := interruptAt(t, env, "==> mmdebstrap:", 5*time.Minute, whenTrue("apt fetches or unpacks", hostNamed("http", "dpkg", "apt-get")), syscall.SIGINT, "image", "build"); code != 130 {
		t.Errorf("image build interrupted in mmdebstrap: exit %d, want 130", code)
	}
	noPartialRoot("interrupted in mmdebstrap")
	if d := subdirs(roots); len(d) != 0 {
		t.Errorf("interrupted in mmdebstrap: root entries %v", d)
	}

	// Out of space.
	if out, err := exec.Command("mount", "-o", "remount,size=150m", home).CombinedOutput(); err != nil {
		t.Fatalf("shrink tmpfs: %v\n%s", err, out)
	}
	code, _, errOut := runKmodvm(t, 15*time.Minute, env, "image", "build")
	if code != 1 || !strings.Contains(errOut, "hint: a filesystem kmodvm writes to is full") {
		t.Errorf("image build on a full filesystem: exit %d, want 1 with a hint about the full filesystem", code)
	}
	if strings.Contains(errOut, "goroutine ") {
		t.Errorf("a stack trace was printed")
	}
	noPartialRoot("out of space")
	if d := subdirs(roots); len(d) != 0 {
		t.Errorf("out of space: root entries %v", d)
	}

	// With room again: the root is built; interrupted while the kernel source unpacks.
	if out, err := exec.Command("mount", "-o", "remount,size=8g", home).CombinedOutput(); err != nil {
		t.Fatalf("grow tmpfs: %v\n%s", err, out)
	}
	if _, code := interruptAt(t, env, "==> kernel: unpacking kernel source", 20*time.Minute, whenTrue("tar unpacks the source", hostNamed("tar")), syscall.SIGTERM, "image", "build"); code != 130 {
		t.Errorf("image build interrupted while unpacking the kernel: exit %d, want 130", code)
	}
	noPartialRoot("interrupted while unpacking the kernel")
	d := subdirs(roots)
	if len(d) != 1 {
		t.Fatalf("root entries after a finished root build: %v, want one", d)
	}
	if _, err := os.Stat(filepath.Join(roots, d[0], "root", "usr", "bin", "rustc")); err != nil {
		t.Errorf("the finished root has no rustc: %v", err)
	}
	trees, _ := filepath.Glob(filepath.Join(home, "cache", "kernels", "trees", "*", "Makefile"))
	for _, tr := range trees {
		if _, err := os.Stat(filepath.Join(filepath.Dir(tr), ".kmodvm-source")); err != nil {
			t.Errorf("a partially unpacked kernel tree is left in %s", filepath.Dir(tr))
		}
	}
}

// TestE2EFullStateDir runs `up` with kmodvm's state dir on a full filesystem: a clear error,
// no domain and no half-made VM; with room, the same `up` works.
func TestE2EFullStateDir(t *testing.T) {
	e2eEnv(t)
	paths := e2ePaths(t)
	home := t.TempDir()
	state := filepath.Join(home, "state")
	os.Mkdir(state, 0o700)
	if err := os.Symlink(paths.Cache, filepath.Join(home, "cache")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,mode=700", "kmodvm-e2e", state).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", state).Run() })
	// The KVM probe's answer for this boot, so the test does not wait for a new probe.
	if data, err := os.ReadFile(filepath.Join(paths.State, "kvm-probe.json")); err == nil {
		os.WriteFile(filepath.Join(state, "kvm-probe.json"), data, 0o600)
	}
	env := []string{"KMODVM_HOME=" + home}
	name := fmt.Sprintf("full-%d", os.Getpid())
	t.Cleanup(func() { runKmodvm(t, 5*time.Minute, env, "destroy", "-n", name) })

	code, _, errOut := runKmodvm(t, 10*time.Minute, env, "up", "-n", name)
	if code != 1 || !strings.Contains(errOut, "hint: a filesystem kmodvm writes to is full") {
		t.Errorf("up with a full state dir: exit %d, want 1 with a hint about the full filesystem", code)
	}
	if domainExists(name) {
		t.Errorf("up with a full state dir left a libvirt domain")
	}
	if _, err := os.Stat(filepath.Join(state, "vms", name)); err == nil {
		t.Errorf("up with a full state dir left a half-made VM in %s", filepath.Join(state, "vms", name))
	}

	if out, err := exec.Command("mount", "-o", "remount,size=64m", state).CombinedOutput(); err != nil {
		t.Fatalf("grow tmpfs: %v\n%s", err, out)
	}
	if code, _, _ := runKmodvm(t, 10*time.Minute, env, "up", "-n", name); code != 0 {
		t.Fatalf("up with room in the state dir: exit %d", code)
	}
	if code, _, _ := runKmodvm(t, time.Minute, env, "-n", name, "exec", "--", "true"); code != 0 {
		t.Errorf("exec after up: exit %d", code)
	}
}

// subdirs lists the names of the directories in dir (cache entries; lock and log files
// beside them are not).
func subdirs(dir string) []string {
	var names []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}
