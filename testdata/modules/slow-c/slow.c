// SPDX-License-Identifier: GPL-2.0
/*
 * init sleeps delay_ms before it returns, so a test can act while the load is in
 * progress (interrupt kmodvm, destroy the guest, restart libvirtd), or make the load
 * outlast `kmodvm run --timeout` (a hung load). The sleep is interruptible: rmmod of a
 * half-loaded module is not possible, but killing insmod ends it.
 */
#include <linux/delay.h>
#include <linux/module.h>

static uint delay_ms = 3000;
module_param(delay_ms, uint, 0444);
MODULE_PARM_DESC(delay_ms, "how long init sleeps, in milliseconds");

static int __init slow_init(void)
{
	pr_info("slow: init sleeps %u ms\n", delay_ms);
	if (msleep_interruptible(delay_ms)) {
		pr_info("slow: interrupted\n");
		return -EINTR;
	}
	pr_info("slow: loaded\n");
	return 0;
}

static void __exit slow_exit(void)
{
	pr_info("slow: unloaded\n");
}

module_init(slow_init);
module_exit(slow_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodvm test module: a load that takes a while");
