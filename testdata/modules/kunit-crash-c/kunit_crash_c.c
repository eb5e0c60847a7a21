// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit suite kunit_crash_c, run at load time: test 2 dereferences a NULL pointer. The
 * kmodvm kernel does not panic on an oops (CONFIG_PANIC_ON_OOPS off, no oops=panic), so
 * the oops kills only KUnit's kthread for that test: KUnit reports it failed ("try
 * faulted") and goes on to test 3. The kernel is left tainted D.
 *
 * With panic=1, test 2 panics instead: the guest dies mid-suite, test 3 never reports.
 * With hang=1, test 2 spins with interrupts off: on kmodvm's one-vCPU guest nothing runs
 * any more (no SSH, no timer), so only kmodvm's step timeout ends it.
 */
#include <kunit/test.h>
#include <linux/compiler.h>
#include <linux/irqflags.h>
#include <linux/module.h>
#include <linux/panic.h>

static bool panic_in_test;
module_param_named(panic, panic_in_test, bool, 0444);
MODULE_PARM_DESC(panic, "Make test 2 panic the kernel instead of oopsing");

static bool hang_in_test;
module_param_named(hang, hang_in_test, bool, 0444);
MODULE_PARM_DESC(hang, "Make test 2 hang the guest (spin with interrupts off)");

static void kunit_crash_c_passes(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, 1 + 1, 2);
}

static void kunit_crash_c_oops(struct kunit *test)
{
	int *p = NULL;

	/* Hidden from the compiler, which would otherwise drop or trap the store. */
	OPTIMIZER_HIDE_VAR(p);
	/* Also the last line KUnit sees before the fault: its "try faulted" names it. */
	KUNIT_EXPECT_NULL(test, p);
	if (panic_in_test)
		panic("kunit_crash_c: deliberate panic in a test");
	if (hang_in_test) {
		local_irq_disable();
		for (;;)
			cpu_relax();
	}
	WRITE_ONCE(*p, 1);
}

static void kunit_crash_c_after(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, 2 + 2, 4);
}

static struct kunit_case kunit_crash_c_cases[] = {
	KUNIT_CASE(kunit_crash_c_passes),
	KUNIT_CASE(kunit_crash_c_oops),
	KUNIT_CASE(kunit_crash_c_after),
	{}
};

static struct kunit_suite kunit_crash_c_suite = {
	.name = "kunit_crash_c",
	.test_cases = kunit_crash_c_cases,
};
kunit_test_suite(kunit_crash_c_suite);

MODULE_DESCRIPTION("kmodvm test module: a C KUnit test that oopses");
MODULE_LICENSE("GPL");
