package kernel

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/provision/kconfig"
	"github.com/kmodvm/kmodvm/vm/golden"
)

// scanHeader finds the non-static functions and the structs a header declares, with the
// options of the #if blocks around them.
func TestScanHeader(t *testing.T) {
	cases := []struct {
		header string
		want   []cItem
	}{
		{"include/linux/iio/iio.h", []cItem{{"struct", "iio_dev", nil}, {"fn", "iio_device_alloc", nil}, {"fn", "iio_device_free", nil}}},
		{"include/linux/gpio/driver.h", []cItem{{"struct", "gpio_chip", []string{"GPIOLIB"}}, {"fn", "gpiochip_add_data", []string{"GPIOLIB"}}}},
		{"include/linux/inline.h", nil},
		{"include/linux/iio.h", []cItem{{"struct", "iio_channel_map", nil}, {"fn", "iio_map_array_register", nil}}},
	}
	for _, tc := range cases {
		data, err := os.ReadFile(filepath.Join("testdata", "bindings", tc.header))
		if err != nil {
			t.Fatal(err)
		}
		if got := scanHeader(data); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.header, got, tc.want)
		}
	}
}

// After a build, each kernel.bindings header must have an item in bindings_generated.rs;
// for those that do not, the warning says why: nothing bindable, an #if on an option that
// is off, the option that builds the header's subsystem, or that kmodvm cannot tell (golden).
func TestCheckBindings(t *testing.T) {
	tree := filepath.Join("testdata", "bindings")
	final := kconfig.New()
	final.Set("RUST", "y")
	warnings, err := checkBindings(tree, []string{"linux/iio/iio.h", "linux/gpio/driver.h", "linux/inline.h", "linux/iio.h", "linux/mystery.h"}, final)
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "golden", "bindings-warnings.txt"), []byte(strings.Join(warnings, "\n")+"\n"))

	final.Set("GPIOLIB", "y")
	final.Set("IIO", "m")
	warnings, err = checkBindings(tree, []string{"linux/gpio/driver.h", "linux/iio.h"}, final)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range warnings {
		if strings.Contains(w, "CONFIG_GPIOLIB") || strings.Contains(w, "CONFIG_IIO,") {
			t.Errorf("blames an option that is on: %s", w)
		}
	}
}

// addBindings appends the headers to bindings_helper.h through the journal, and refuses a
// header the kernel does not have, or a kernel without Rust bindings, before any build.
func TestAddBindings(t *testing.T) {
	tree := t.TempDir()
	writeFile(t, filepath.Join(tree, "include/linux/iio/iio.h"), "struct iio_dev;\n")
	writeFile(t, filepath.Join(tree, "arch/x86/include/asm/msr.h"), "int rdmsr(void);\n")
	j, err := newJournal(tree)
	if err != nil {
		t.Fatal(err)
	}
	if err := addBindings(j, []string{"linux/iio/iio.h"}); err == nil || !strings.Contains(err.Error(), "no rust/bindings/bindings_helper.h") {
		t.Errorf("a kernel without bindings_helper.h: %v", err)
	}
	const helper = "/* SPDX-License-Identifier: GPL-2.0 */\n#include <linux/slab.h>\n"
	writeFile(t, filepath.Join(tree, bindingsHelper), helper)
	err = addBindings(j, []string{"linux/iio/iio.h", "linux/iio/iioo.h"})
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "no linux/iio/iioo.h") || strings.Contains(err.Error(), "no linux/iio/iio.h,") {
		t.Errorf("a misspelled header: %v", err)
	}
	if err := addBindings(j, []string{"linux/iio/iio.h", "asm/msr.h"}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(tree, bindingsHelper))
	want := helper + "\n/* kmodvm.yaml kernel.bindings */\n#include <linux/iio/iio.h>\n#include <asm/msr.h>\n"
	if string(got) != want {
		t.Errorf("bindings_helper.h =\n%s\nwant\n%s", got, want)
	}
	if err := restorePatched(tree); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(tree, bindingsHelper)); string(got) != helper {
		t.Errorf("restored bindings_helper.h =\n%s", got)
	}
}
