// SPDX-License-Identifier: GPL-2.0
/* Panics the guest in init: kmodvm shows the trace from the console, restarts the guest
 * and exits 5. */
#include <linux/module.h>
static int __init panicker_init(void)
{
	panic("panicker: deliberate panic from a kmodvm test module");
	return 0;
}
module_init(panicker_init);
MODULE_LICENSE("GPL");
