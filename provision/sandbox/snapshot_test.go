package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/vmtest"
)

func testKey() saveKey {
	return saveKey{Format: saveFormat, DomainFormat: vm.DomainFormat, UUID: "5b0f8c3e-2f1a-4c6e-9d7b-3a1e2c4d5f60",
		Accel: vm.AccelTCG, MemoryMiB: 512, CPUs: 1, Kernel: "/c/kernels/k1/bzImage", KernelKey: "k1", Cmdline: Cmdline,
		DiskKey: "d1", Libvirt: 9000000, QEMU: 7002000}
}

// TestSaveKeyStale: every part of the key invalidates a save, and says how.
func TestSaveKeyStale(t *testing.T) {
	tests := []struct {
		name string
		edit func(*saveKey)
		want string
	}{
		{"same", func(*saveKey) {}, ""},
		{"kernel rebuilt", func(k *saveKey) { k.KernelKey = "k2" }, "another kernel"},
		{"command line", func(k *saveKey) { k.Cmdline += " quiet" }, "another kernel"},
		{"image changed", func(k *saveKey) { k.DiskKey = "d2" }, "another image"},
		{"memory", func(k *saveKey) { k.MemoryMiB = 1024 }, "512 MiB of memory, now 1024"},
		{"vCPUs", func(k *saveKey) { k.CPUs = 2 }, "1 vCPUs, now 2"},
		{"accel", func(k *saveKey) { k.Accel = vm.AccelKVM }, "accel tcg, now kvm"},
		{"QEMU upgraded", func(k *saveKey) { k.QEMU = 8001003 }, "QEMU 7.2.0, now 8.1.3"},
		{"libvirt upgraded", func(k *saveKey) { k.Libvirt = 10000000 }, "libvirt 9.0.0, now 10.0.0"},
		{"domain shape", func(k *saveKey) { k.DomainFormat++ }, "kmodvm's save format changed"},
		{"UUID", func(k *saveKey) { k.UUID = "00000000-0000-5000-8000-000000000000" }, "another domain UUID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := testKey()
			tt.edit(&now)
			got := testKey().stale(now)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("stale = %q, want %q", got, tt.want)
			}
			if (got == "") != (testKey().hash() == now.hash()) {
				t.Errorf("hash changed %v, but stale says %q", testKey().hash() != now.hash(), got)
			}
		})
	}
}

// TestPlanBoot: what a stopped VM starts from, and what makes a save unusable.
func TestPlanBoot(t *testing.T) {
	own := &saveMeta{Key: testKey()}
	upgraded := testKey()
	upgraded.QEMU = 8000000
	tests := []struct {
		name   string
		facts  bootFacts
		want   bootPlan
		notice string
	}{
		{"new VM, no pristine save: boot and save it", bootFacts{Usable: true, Fresh: true, Key: testKey()},
			bootPlan{MakeSaving: true}, ""},
		{"new VM: restore the pristine save", bootFacts{Usable: true, Fresh: true, Key: testKey(), Pristine: true},
			bootPlan{From: FromPristine}, ""},
		{"new VM, up --cold: boot, no save", bootFacts{Cold: true, Usable: true, Fresh: true, Key: testKey(), Pristine: true},
			bootPlan{}, ""},
		{"new VM on a remote host: boot", bootFacts{Fresh: true, Key: testKey(), Pristine: true},
			bootPlan{}, ""},
		{"existing VM without a save: boot on its disk", bootFacts{Usable: true, Key: testKey(), Pristine: true},
			bootPlan{}, ""},
		{"own save: resume it", bootFacts{Usable: true, Own: own, OwnMemory: true, Key: testKey(), Pristine: true},
			bootPlan{From: FromOwnSave, DropOwn: true}, ""},
		{"own save, up --cold: drop it", bootFacts{Cold: true, Usable: true, Own: own, OwnMemory: true, Key: testKey()},
			bootPlan{DropOwn: true}, "up --cold: dropping the VM's saved state"},
		{"own save, QEMU upgraded: drop it", bootFacts{Usable: true, Own: own, OwnMemory: true, Key: upgraded},
			bootPlan{DropOwn: true}, "stale (QEMU 7.2.0, now 8.0.0); booting cold on its disk"},
		{"own save without its memory file", bootFacts{Usable: true, Own: own, Key: testKey()},
			bootPlan{DropOwn: true}, "incomplete"},
		{"memory file without its key", bootFacts{Usable: true, OwnMemory: true, Key: testKey()},
			bootPlan{DropOwn: true}, "incomplete"},
		{"unreadable key file", bootFacts{Usable: true, OwnErr: errors.New("bad JSON"), OwnMemory: true, Key: testKey()},
			bootPlan{DropOwn: true}, "unreadable (bad JSON)"},
		{"own save on a connection that cannot restore", bootFacts{Own: own, OwnMemory: true, Key: testKey()},
			bootPlan{DropOwn: true}, "cannot be restored over this libvirt connection"},
		{"an own save never makes way for the pristine one", bootFacts{Usable: true, Fresh: true, Own: own, OwnMemory: true, Key: upgraded, Pristine: true},
			bootPlan{DropOwn: true}, "stale"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := planBoot(tt.facts)
			notice := got.Notice
			got.Notice = ""
			if got != tt.want {
				t.Errorf("plan %+v, want %+v", got, tt.want)
			}
			if (tt.notice == "") != (notice == "") || !strings.Contains(notice, tt.notice) {
				t.Errorf("notice %q, want %q", notice, tt.notice)
			}
		})
	}
}

// TestCheckClock: the guest's clock must end within a second of the host's.
func TestCheckClock(t *testing.T) {
	before := time.Unix(1_800_000_000, 0)
	after := before.Add(200 * time.Millisecond)
	tests := []struct {
		out, want string
	}{
		{"1800000000.100000000\n", ""},
		{"1800000001.150000000\n", ""},
		{"1799999999.500000000\n", ""},
		{"1799999990.000000000\n", "10s behind"},
		{"1800000003.000000000\n", "2.8s ahead"},
		{"date: invalid date\n", "is not a time"},
	}
	for _, tt := range tests {
		err := checkClock(tt.out, before, after)
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("checkClock(%q) = %v, want %q", tt.out, err, tt.want)
		}
	}
}

// TestFixCommand runs the restored guest's fix-up command in a shell whose PATH holds fakes
// that record what they were given: where the disk has the static program, it alone gets the
// host's time and the seed (perl is there too, and not run); without it, one perl process
// gets the program, the time and the seed; without perl, date sets and prints the clock and
// cat feeds the seed. The perl program itself is compiled (perl -c), never run: here it
// would set this machine's clock.
func TestFixCommand(t *testing.T) {
	const now = "1800000000.000000042"
	seed := "seed\x00bytes"
	record := `printf '%s\n' "$@" >"$OUT/${0##*/}.args"; cat >"$OUT/${0##*/}.stdin"; echo 1800000000.5`
	tests := []struct {
		name     string
		fakes    map[string]string
		wantArgs map[string]string
		wantSeed string // which fake got the seed
		notRun   string // a fake that must not run
	}{
		{"program", map[string]string{"kmodvm-fix": record, "perl": record},
			map[string]string{"kmodvm-fix": now + "\n"}, "kmodvm-fix", "perl"},
		{"perl", map[string]string{"perl": record},
			map[string]string{"perl": "-e\n" + strings.ReplaceAll(fixPerl, "%%", "%") + "\n" + now + "\n"}, "perl", ""},
		{"no perl", map[string]string{
			"date": `printf '%s\n' "$@" >>"$OUT/date.args"; [ "$1" = -u ] && [ "$2" = +%s.%N ] && echo 1800000000.5; exit 0`,
			"cat":  `cat >"$OUT/cat.stdin"`,
		}, map[string]string{"date": "-u\n-s\n@" + now + "\n-u\n+%s.%N\n"}, "cat", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bin, out := t.TempDir(), t.TempDir()
			realCat, err := exec.LookPath("cat")
			if err != nil {
				t.Fatal(err)
			}
			for name, body := range tt.fakes { // PATH has only the fakes: they run the real cat
				script := "#!/bin/sh\n" + strings.ReplaceAll(body, "cat >", realCat+" >") + "\n"
				if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			// The program is named by its path, where the disk has it.
			cmd := fixCommand(time.Unix(1_800_000_000, 42), filepath.Join(bin, "kmodvm-fix"))
			c := exec.Command("/bin/sh", "-c", cmd)
			c.Env = []string{"PATH=" + bin, "OUT=" + out}
			c.Stdin = strings.NewReader(seed)
			got, err := c.Output()
			if err != nil {
				t.Fatalf("%s: %v", cmd, err)
			}
			if strings.TrimSpace(string(got)) != "1800000000.5" {
				t.Errorf("printed %q, want the clock the fake gave", got)
			}
			for name, want := range tt.wantArgs {
				if data, _ := os.ReadFile(filepath.Join(out, name+".args")); string(data) != want {
					t.Errorf("%s got args %q, want %q", name, data, want)
				}
			}
			if data, _ := os.ReadFile(filepath.Join(out, tt.wantSeed+".stdin")); string(data) != seed {
				t.Errorf("%s got stdin %q, want the seed", tt.wantSeed, data)
			}
			if _, err := os.Stat(filepath.Join(out, tt.notRun+".args")); tt.notRun != "" && err == nil {
				t.Errorf("%s ran", tt.notRun)
			}
		})
	}
	if strings.Contains(fixPerl, "'") {
		t.Errorf("fixPerl holds a single quote, which ends the shell's quoting")
	}
	perl, err := exec.LookPath("perl")
	if err != nil {
		t.Skip("no perl here to compile fixPerl with")
	}
	if out, err := exec.Command(perl, "-c", "-e", strings.ReplaceAll(fixPerl, "%%", "%")).CombinedOutput(); err != nil {
		t.Errorf("perl -c fixPerl: %v\n%s", err, out)
	}
}

func TestStableUUID(t *testing.T) {
	a, b := stableUUID("kmodvm-1000-dev"), stableUUID("kmodvm-1000-ci")
	if a != stableUUID("kmodvm-1000-dev") || a == b {
		t.Errorf("stableUUID: %s, %s: want one per name, the same every time", a, b)
	}
	if err := (vm.DomainSpec{Name: "x", UUID: a, Accel: vm.AccelTCG, MemoryMiB: 64, CPUs: 1, Kernel: "/k", Disk: "/d", SSHPort: 22}).Validate(); err != nil || a[14] != '5' {
		t.Errorf("stableUUID = %s, want a version 5 UUID", a)
	}
}

// stoppedVM is a VM as an earlier `up` left it, stopped, with an overlay holding content.
func (fx *fixture) stoppedVM(name, content string) *Instance {
	fx.t.Helper()
	in := fx.instance(name, freePort(fx.t))
	writeFile(fx.t, in.Overlay(), content)
	return in
}

func (fx *fixture) statusHas(part string) bool {
	return slices.ContainsFunc(fx.statusLines(), func(s string) bool { return strings.Contains(s, part) })
}

// TestDownSavesAndUpResumes: down saves the running guest into the VM's state directory, up
// resumes it (the disk stays as it was) and the save is gone; status tells.
func TestDownSavesAndUpResumes(t *testing.T) {
	fx := newFixture(t)
	ctx := testContext(t)
	fx.stoppedVM("dev", "the user's disk")
	in, c := fx.up("dev")
	c.Close()
	execs := len(fx.srv.Execs())
	if stopped, err := fx.sb.Down(ctx, "dev", time.Hour); err != nil || stopped != StoppedSaved {
		t.Fatalf("Down: %q, %v; want %q", stopped, err, StoppedSaved)
	}
	if !exists(in.OwnSave()) || !exists(in.OwnSaveMeta()) || len(fx.lv.Running()) != 0 {
		t.Fatalf("after down: save %v, key %v, running %q; want a save and nothing running", exists(in.OwnSave()), exists(in.OwnSaveMeta()), fx.lv.Running())
	}
	if len(fx.srv.Execs()) != execs {
		t.Errorf("down ran %q in the guest; a save needs no shutdown", fx.srv.Execs()[execs:])
	}
	st, err := fx.sb.Status(ctx, "dev")
	if err != nil || st.SaveBytes == 0 || st.RestoredFrom != "" {
		t.Errorf("status of the saved VM: %+v, %v; want its save's size", st, err)
	}

	creates := len(fx.lv.Calls("DomainCreate"))
	in, c = fx.up("dev")
	c.Close()
	if len(fx.lv.Calls("DomainCreate")) != creates || len(fx.lv.Restored()) != 1 || fx.fixes != 1 {
		t.Errorf("up booted %d times, restored %d, fixed up %d; want one restore, fixed up, no boot",
			len(fx.lv.Calls("DomainCreate"))-creates, len(fx.lv.Restored()), fx.fixes)
	}
	if exists(in.OwnSave()) || exists(in.OwnSaveMeta()) {
		t.Error("the save is still there after up resumed it: the disk moves on without it")
	}
	if got := string(readFile(t, in.Overlay())); got != "the user's disk" {
		t.Errorf("overlay = %q, want the VM's own kept", got)
	}
	st, err = fx.sb.Status(ctx, "dev")
	if err != nil || st.RestoredFrom != FromOwnSave || st.SaveBytes != 0 {
		t.Errorf("status after resuming: %+v, %v; want restored_from %q", st, err, FromOwnSave)
	}
}

// TestUpOwnSaveUnusable: a stale, broken or unwanted own save never fails up: a notice, the
// save dropped, a cold boot on the VM's own disk.
func TestUpOwnSaveUnusable(t *testing.T) {
	tests := []struct {
		name   string
		spoil  func(fx *fixture, in *Instance)
		notice string
	}{
		{"QEMU upgraded", func(fx *fixture, _ *Instance) { fx.lv.SetQEMUVersion(8000000) },
			"the VM's saved state is stale (QEMU 7.2.0, now 8.0.0); booting cold on its disk"},
		{"libvirt upgraded", func(fx *fixture, _ *Instance) { fx.lv.SetLibVersion(10000000) },
			"stale (libvirt 9.0.0, now 10.0.0)"},
		{"truncated file", func(fx *fixture, in *Instance) {
			b := readFile(fx.t, in.OwnSave())
			writeFile(fx.t, in.OwnSave(), string(b[:len(b)-3]))
		}, "resuming dev from its saved state failed (restore domain"},
		{"not a save image", func(fx *fixture, in *Instance) { writeFile(fx.t, in.OwnSave(), "garbage, not a save image") },
			"image magic is incorrect"},
		{"libvirt refuses", func(fx *fixture, _ *Instance) {
			fx.lv.FailOn("DomainRestoreFlags", vmtest.Error(libvirt.ErrOperationFailed, "operation failed: Unknown savevm section or instance 'slirp'"))
		}, "Unknown savevm section"},
		{"guest does not answer", func(fx *fixture, _ *Instance) {
			fx.lv.OnRestored(func(string, string) {}) // no port forward: SSH never answers
			fx.sb.opt.BootTimeout = time.Second
		}, "resuming dev from its saved state failed"},
		{"clock cannot be set", func(fx *fixture, _ *Instance) { fx.fixErr = errors.New("date: cannot set date") },
			"fix up the restored guest: date: cannot set date"},
		{"up --cold", func(fx *fixture, _ *Instance) { fx.sb.opt.Cold = true }, "up --cold: dropping the VM's saved state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			ctx := testContext(t)
			fx.stoppedVM("dev", "the user's disk")
			_, c := fx.up("dev")
			c.Close()
			if _, err := fx.sb.Down(ctx, "dev", time.Hour); err != nil {
				t.Fatal(err)
			}
			in, err := fx.sb.Instance("dev")
			if err != nil {
				t.Fatal(err)
			}
			tt.spoil(fx, in)
			creates := len(fx.lv.Calls("DomainCreate"))
			in, c = fx.up("dev")
			c.Close()
			if !fx.statusHas(tt.notice) {
				t.Errorf("status lines %q lack %q", fx.statusLines(), tt.notice)
			}
			if len(fx.lv.Calls("DomainCreate")) != creates+1 {
				t.Errorf("up did not boot cold")
			}
			if exists(in.OwnSave()) || exists(in.OwnSaveMeta()) || in.RestoredFrom != "" {
				t.Errorf("after the cold boot: save %v, key %v, restored from %q; want the save gone", exists(in.OwnSave()), exists(in.OwnSaveMeta()), in.RestoredFrom)
			}
			if got := string(readFile(t, in.Overlay())); got != "the user's disk" {
				t.Errorf("overlay = %q, want the VM's own kept", got)
			}
		})
	}
}

// TestDownWithoutRoom: down does not save into a full file system; it shuts the guest down.
func TestDownWithoutRoom(t *testing.T) {
	fx := newFixture(t)
	fx.free = 100 << 20
	fx.stoppedVM("dev", "disk")
	in, c := fx.up("dev")
	c.Close()
	if stopped, _ := fx.sb.Down(testContext(t), "dev", 200*time.Millisecond); stopped == StoppedSaved {
		t.Error("down says it saved the VM's state into a file system without room")
	}
	if exists(in.OwnSave()) || len(fx.lv.Calls("DomainSaveFlags")) != 0 {
		t.Error("down saved into a file system without room")
	}
	if !fx.statusHas("not saving the VM's state: ") || !fx.statusHas("100 MiB free, a save needs up to 768 MiB") {
		t.Errorf("status lines %q do not say why it did not save", fx.statusLines())
	}
}

// TestPristineSave: a new VM's first boot saves its pristine guest (memory and overlay) and
// goes on from that save; the next new incarnation restores it with its own overlay copy;
// recovery restores it too, replacing the guest's disk; a broken one is replaced.
func TestPristineSave(t *testing.T) {
	fx := newFixture(t)
	ctx := testContext(t)
	in := fx.stoppedVM("dev", "freshly booted disk")
	c, err := fx.sb.boot(ctx, in, true)
	if err != nil {
		t.Fatalf("first boot: %v", err)
	}
	c.Close()
	key, err := fx.sb.saveKey(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	dir := fx.sb.pristine(key)
	if dir == "" {
		t.Fatalf("no pristine save after the first boot; status %q", fx.statusLines())
	}
	if got := string(readFile(t, filepath.Join(dir, overlayFile))); got != "freshly booted disk" {
		t.Errorf("pristine overlay = %q, want the booted VM's", got)
	}
	if len(fx.lv.Calls("DomainCreate")) != 1 || len(fx.lv.Restored()) != 1 || fx.fixes != 1 || in.RestoredFrom != "" {
		t.Errorf("boots %d, restores %d, fix-ups %d, restored from %q: want one boot, then the guest resumed from its save",
			len(fx.lv.Calls("DomainCreate")), len(fx.lv.Restored()), fx.fixes, in.RestoredFrom)
	}
	st, err := fx.sb.Status(ctx, "dev")
	if err != nil || st.PristineSaveBytes != pristineSize(dir) || st.PristineSaveBytes == 0 {
		t.Errorf("status %+v, %v: want the pristine save's size %d", st, err, pristineSize(dir))
	}

	// A crash: recovery restores the pristine save on a copy of its overlay, and marks the
	// save used (the cache keeps the most recently used).
	writeFile(t, in.Overlay(), "the guest's own changes")
	longAgo := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, metaFile), longAgo, longAgo); err != nil {
		t.Fatal(err)
	}
	c, how, err := fx.sb.Restart(ctx, in)
	if err != nil || how != "restored" {
		t.Fatalf("Restart = %q, %v; want restored", how, err)
	}
	c.Close()
	if fi, err := os.Stat(filepath.Join(dir, metaFile)); err != nil || time.Since(fi.ModTime()) > time.Hour {
		t.Errorf("the restored save is not marked used: %v", err)
	}
	if got := string(readFile(t, in.Overlay())); got != "freshly booted disk" {
		t.Errorf("overlay after recovery = %q, want the pristine copy", got)
	}
	if in.RestoredFrom != FromPristine || fx.fixes != 2 {
		t.Errorf("restored from %q, %d fix-ups", in.RestoredFrom, fx.fixes)
	}

	// The restore XML is the VM's: its disk, port and name, with the saved UUID.
	x := fx.lv.Restored()[len(fx.lv.Restored())-1]
	if !strings.Contains(x, in.Overlay()) || xmlPort(x) != in.SSHPort || !strings.Contains(x, in.UUID) {
		t.Errorf("restore XML does not run the VM's disk %s on port %d:\n%s", in.Overlay(), in.SSHPort, x)
	}

	// A broken pristine save: the next restore fails, the VM boots cold on a fresh overlay
	// and saves afresh.
	writeFile(t, filepath.Join(dir, memoryFile), "garbage, not a save image")
	c, how, err = fx.sb.Restart(ctx, in)
	if err != nil || how != "rebooted" {
		t.Fatalf("Restart with a broken save = %q, %v; want rebooted", how, err)
	}
	c.Close()
	if !fx.statusHas("restoring dev from its pristine save failed") || !fx.statusHas("image magic is incorrect") {
		t.Errorf("status lines %q do not tell the restore failed", fx.statusLines())
	}
	if got := string(readFile(t, in.Overlay())); !strings.HasPrefix(got, "fresh overlay on ") {
		t.Errorf("overlay after the failed restore = %q, want a fresh one", got)
	}
	if d := fx.sb.pristine(key); d == "" || strings.HasPrefix(string(readFile(t, filepath.Join(d, memoryFile))), "garbage") {
		t.Errorf("no fresh pristine save after the broken one")
	}
}

// TestPristineSaveNoRoom: no save into a full cache; the VM runs on.
func TestPristineSaveNoRoom(t *testing.T) {
	fx := newFixture(t)
	fx.free = 1 << 20
	ctx := testContext(t)
	in := fx.stoppedVM("dev", "disk")
	c, err := fx.sb.boot(ctx, in, true)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if len(fx.lv.Calls("DomainSaveFlags")) != 0 || !fx.statusHas("not saving the booted guest for the next up: ") {
		t.Errorf("saves %q, status %q: want no save and a notice", fx.lv.Calls("DomainSaveFlags"), fx.statusLines())
	}
	if _, err := os.Stat(savesDir(fx.opt.Cache)); err == nil {
		if ents, _ := os.ReadDir(savesDir(fx.opt.Cache)); len(ents) != 0 {
			t.Errorf("saves dir holds %d entries", len(ents))
		}
	}
}

// TestUpOwnSavePortTaken: the VM's port taken while it was down does not spoil its save: the
// restore forwards SSH from a new free port (the port lives in the restore XML, not in the
// saved machine).
func TestUpOwnSavePortTaken(t *testing.T) {
	fx := newFixture(t)
	ctx := testContext(t)
	fx.stoppedVM("dev", "disk")
	in, c := fx.up("dev")
	c.Close()
	if _, err := fx.sb.Down(ctx, "dev", time.Hour); err != nil {
		t.Fatal(err)
	}
	old := in.SSHPort
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", old))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	creates := len(fx.lv.Calls("DomainCreate"))
	in, c = fx.up("dev")
	c.Close()
	if len(fx.lv.Calls("DomainCreate")) != creates || in.RestoredFrom != FromOwnSave {
		t.Fatalf("up booted instead of resuming; status %q", fx.statusLines())
	}
	x := fx.lv.Restored()[len(fx.lv.Restored())-1]
	if in.SSHPort == old || xmlPort(x) != in.SSHPort {
		t.Errorf("resumed on port %d (restore XML: %d), was %d: want a new free port in the XML", in.SSHPort, xmlPort(x), old)
	}
}
