// SPDX-License-Identifier: GPL-2.0
/* init fails with -EINVAL: insmod fails, kmodvm exits 4. */
#include <linux/module.h>
static int __init einval_init(void)
{
	pr_info("einval: refusing to load\n");
	return -EINVAL;
}
module_init(einval_init);
MODULE_LICENSE("GPL");
