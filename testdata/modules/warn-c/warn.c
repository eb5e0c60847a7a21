// SPDX-License-Identifier: GPL-2.0
/* Hits WARN_ON in init: loads, but kmodvm exits 5 and shows the WARNING. */
#include <linux/module.h>
static int __init warn_init(void)
{
	WARN_ON(1);
	return 0;
}
static void __exit warn_exit(void) {}
module_init(warn_init);
module_exit(warn_exit);
MODULE_LICENSE("GPL");
