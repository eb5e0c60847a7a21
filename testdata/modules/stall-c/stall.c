// SPDX-License-Identifier: GPL-2.0
// Never loaded: the fault tests interrupt its build (see Kbuild).
#include <linux/module.h>

static int __init stall_init(void) { return 0; }
static void __exit stall_exit(void) { }

module_init(stall_init);
module_exit(stall_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodvm test: a module whose build stalls");
