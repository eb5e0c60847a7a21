// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit suite kunit_c, run at load time: a test that passes, one whose KUNIT_EXPECT_EQ
 * fails, one skipped with a reason, and one with three parameters that all pass. Loading
 * prints nothing else.
 */
#include <kunit/test.h>
#include <linux/module.h>

static int kunit_c_double(int x)
{
	return 2 * x;
}

static void kunit_c_passes(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, kunit_c_double(21), 42);
}

static void kunit_c_fails(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, kunit_c_double(2), 5);
}

static void kunit_c_skipped(struct kunit *test)
{
	kunit_skip(test, "not run on purpose");
}

struct kunit_c_param {
	int in, want;
	const char *desc;
};

static const struct kunit_c_param kunit_c_params_array[] = {
	{ .in = 0, .want = 0, .desc = "zero" },
	{ .in = 1, .want = 2, .desc = "one" },
	{ .in = -3, .want = -6, .desc = "minus three" },
};
KUNIT_ARRAY_PARAM_DESC(kunit_c_params, kunit_c_params_array, desc);

static void kunit_c_params(struct kunit *test)
{
	const struct kunit_c_param *p = test->param_value;

	KUNIT_EXPECT_EQ(test, kunit_c_double(p->in), p->want);
}

static struct kunit_case kunit_c_cases[] = {
	KUNIT_CASE(kunit_c_passes),
	KUNIT_CASE(kunit_c_fails),
	KUNIT_CASE(kunit_c_skipped),
	KUNIT_CASE_PARAM(kunit_c_params, kunit_c_params_gen_params),
	{}
};

static struct kunit_suite kunit_c_suite = {
	.name = "kunit_c",
	.test_cases = kunit_c_cases,
};
kunit_test_suite(kunit_c_suite);

MODULE_DESCRIPTION("kmodvm test module: a C KUnit suite with a failing and a skipped test");
MODULE_LICENSE("GPL");
