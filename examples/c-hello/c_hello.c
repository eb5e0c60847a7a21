// SPDX-License-Identifier: GPL-2.0
/*
 * c_hello: kmodvm's example C module. `kmodvm run examples/c-hello -p whom=kernel`
 * Its KUnit suite `c_hello` runs at load time: `kmodvm test examples/c-hello`.
 */
#include <kunit/test.h>
#include <linux/init.h>
#include <linux/module.h>
#include <linux/printk.h>
#include <linux/slab.h>

static char *whom = "world";
module_param(whom, charp, 0444);
MODULE_PARM_DESC(whom, "Who to greet");

/*
 * The greeting, apart from init so that the KUnit suite can check it: tests run after
 * init, when its __init code is gone. The caller frees it.
 */
static char *c_hello_greeting(const char *name, gfp_t gfp)
{
	return kasprintf(gfp, "Hello, %s, from C!", name);
}

static int __init c_hello_init(void)
{
	char *greeting = c_hello_greeting(whom, GFP_KERNEL);

	if (!greeting)
		return -ENOMEM;
	pr_info("c_hello: %s\n", greeting);
	kfree(greeting);
	return 0;
}

static void __exit c_hello_exit(void)
{
	pr_info("c_hello: Goodbye, %s\n", whom);
}

module_init(c_hello_init);
module_exit(c_hello_exit);
MODULE_DESCRIPTION("kmodvm's example C module");
MODULE_LICENSE("GPL");

/* A kernel without KUnit still builds and loads the module, without its tests. */
#if IS_ENABLED(CONFIG_KUNIT)

static void c_hello_greets_the_default(struct kunit *test)
{
	char *greeting = c_hello_greeting("world", GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, greeting);
	KUNIT_EXPECT_STREQ(test, greeting, "Hello, world, from C!");
	kfree(greeting);
}

/* whom comes from the user: it is printed as it is, never read as a format. */
static void c_hello_greets_whom_verbatim(struct kunit *test)
{
	char *greeting = c_hello_greeting("100%s sure", GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, greeting);
	KUNIT_EXPECT_STREQ(test, greeting, "Hello, 100%s sure, from C!");
	kfree(greeting);
}

static struct kunit_case c_hello_cases[] = {
	KUNIT_CASE(c_hello_greets_the_default),
	KUNIT_CASE(c_hello_greets_whom_verbatim),
	{}
};

static struct kunit_suite c_hello_suite = {
	.name = "c_hello",
	.test_cases = c_hello_cases,
};
kunit_test_suite(c_hello_suite);
#endif
