package main

import (
	"github.com/kmodvm/kmodvm/provision/crashes"
	"github.com/kmodvm/kmodvm/provision/kernel"
	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/provision/sandbox"
)

// Every --json output carries "schema": "kmodvm.<command>/v1". The version is bumped when a
// field is removed, renamed or changes meaning; new fields do not bump it. docs/json.md
// documents every field (TestJSONDocumented keeps the two in step).
const (
	schemaRun          = "kmodvm.run/v1"
	schemaTest         = "kmodvm.test/v1"
	schemaWatch        = "kmodvm.watch/v1"
	schemaUp           = "kmodvm.up/v1"
	schemaStatus       = "kmodvm.status/v1"
	schemaList         = "kmodvm.list/v1"
	schemaDoctor       = "kmodvm.doctor/v1"
	schemaLogs         = "kmodvm.logs/v1"
	schemaKernelConfig = "kmodvm.kernel-config/v1"
	schemaKernelBuild  = "kmodvm.kernel-build/v1"
	schemaImageBuild   = "kmodvm.image-build/v1"
	schemaCacheKey     = "kmodvm.cache-key/v1"
	schemaCrashes      = "kmodvm.crashes/v1"
	schemaNew          = "kmodvm.new/v1"
	schemaCrash        = crashes.Schema // crashes show --json: meta.json and the traces
	schemaBindings     = "kmodvm.bindings/v1"
	schemaDoc          = "kmodvm.doc/v1"
	schemaIDE          = "kmodvm.ide/v1"
	schemaDown         = "kmodvm.down/v1"
	schemaDestroy      = "kmodvm.destroy/v1"
	schemaSync         = "kmodvm.sync/v1"
	schemaExec         = "kmodvm.exec/v1"
)

// downJSON is `down --json`: how the VM was stopped.
type downJSON struct {
	Schema  string `json:"schema"`
	Name    string `json:"name"`
	Stopped string `json:"stopped"`
}

// destroyJSON is `destroy --json`: the VM that is gone.
type destroyJSON struct {
	Schema   string `json:"schema"`
	Name     string `json:"name"`
	StateDir string `json:"state_dir"`
}

// syncJSON is `sync --json`: what the sync sent.
type syncJSON struct {
	Schema   string `json:"schema"`
	Dir      string `json:"dir"`
	GuestDir string `json:"guest_dir"`
	module.SyncResult
}

// execJSON is `exec --json`: the command, its exit status and output.
type execJSON struct {
	Schema  string   `json:"schema"`
	Command []string `json:"command"`
	execResult
}

// upJSON is `up --json`: the VM that is now running.
type upJSON struct {
	Schema        string `json:"schema"`
	Name          string `json:"name"`
	KernelRelease string `json:"kernel_release"`
	ConfigHash    string `json:"config_hash"`
	KernelDebug   bool   `json:"kernel_debug"`
	Accel         string `json:"accel"`
	SSHPort       int    `json:"ssh_port"`
}

// statusJSON is `status --json`.
type statusJSON struct {
	Schema string `json:"schema"`
	sandbox.Status
}

// listJSON is `list --json`.
type listJSON struct {
	Schema string           `json:"schema"`
	VMs    []sandbox.Status `json:"vms"`
}

// doctorJSON is `doctor --json`.
type doctorJSON struct {
	Schema string  `json:"schema"`
	OK     bool    `json:"ok"` // no check failed (the exit code is 0)
	Checks []check `json:"checks"`
}

// kernelBuildJSON is `kernel build --json`.
type kernelBuildJSON struct {
	Schema string `json:"schema"`
	*kernel.Result
	Cached  bool   `json:"cached"`
	Bzimage string `json:"bzimage"`
	Vmlinux string `json:"vmlinux,omitempty"` // debug kernels only
	KDir    string `json:"kdir"`
	Log     string `json:"log"`
}

// imageBuildJSON is `image build --json`: the artifacts a VM boots from.
type imageBuildJSON struct {
	Schema        string `json:"schema"`
	Root          string `json:"root"`
	RootHash      string `json:"root_hash"`
	KernelRelease string `json:"kernel_release"`
	KernelKey     string `json:"kernel_key"`
	Disk          string `json:"disk"`
	DiskKey       string `json:"disk_key"`
}

// cacheKeyJSON is `cache key --json`.
type cacheKeyJSON struct {
	Schema string `json:"schema"`
	sandbox.CacheKeys
}
