// SPDX-License-Identifier: GPL-2.0
/* c_hello: kmodvm's example C module. `kmodvm run examples/c-hello -p whom=kernel` */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/printk.h>

static char *whom = "world";
module_param(whom, charp, 0444);
MODULE_PARM_DESC(whom, "Who to greet");

static int __init c_hello_init(void)
{
	pr_info("c_hello: Hello, %s, from C!\n", whom);
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
