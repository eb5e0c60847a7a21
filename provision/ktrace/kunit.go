package ktrace

import (
	"slices"
	"strings"

	"github.com/kmodvm/kmodvm/provision/kmsg"
)

// KUnitTestName finds, in the frames of a crash during a KUnit test, the
// test's function: the nearest module frame above kunit_try_run_case
// (KUnit's own frames between them are built in, and the guess unwinder
// lists stale ones too, so unreliable frames count). The Rust kunit_tests
// macro wraps each test in kunit_rust_wrapper_NAME. "" when the frames do
// not show it.
func KUnitTestName(frames []Frame) string {
	i := slices.IndexFunc(frames, func(f Frame) bool { return f.Func == "kunit_try_run_case" })
	for i--; i >= 0; i-- {
		if frames[i].Module != "" {
			fn := frames[i].Func
			if j := strings.LastIndex(fn, "::"); j >= 0 {
				fn = fn[j+2:]
			}
			return strings.TrimPrefix(fn, "kunit_rust_wrapper_")
		}
	}
	return ""
}

// CrashedKUnitTest is KUnitTestName over every frame in the records: a
// crash that took the guest down leaves a log that may end inside its
// report, where Parse's reports would not reach.
func CrashedKUnitTest(records []kmsg.Record) string {
	var frames []Frame
	for _, l := range splitLines(records) {
		if f, ok := ParseFrame(l.text); ok {
			frames = append(frames, f)
		}
	}
	return KUnitTestName(frames)
}
