// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit suite kunit_crash_c, run at load time: test 2 dereferences a NULL pointer. The
 * kmodvm kernel does not panic on an oops (CONFIG_PANIC_ON_OOPS off, no oops=panic), so
 * the oops kills only KUnit's kthread for that test: KUnit reports it failed ("try
 * faulted") and goes on to test 3. The kernel is left tainted D.
 *
 * With panic=1, test 2 panics instead: the guest dies mid-suite, test 3 never reports.
 */
#include <kunit/test.h>
#include <linux/compiler.h>
#include <linux/module.h>
#include <linux/panic.h>

static bool panic_in_test;
module_param_named(panic, panic_in_test, bool, 0444);
MODULE_PARM_DESC(panic, "Make test 2 panic the kernel instead of oopsing");

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
