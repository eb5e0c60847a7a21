// SPDX-License-Identifier: GPL-2.0
/* Does not compile: its macro breaks the declaration of kfree in the kernel's slab.h. */
#define kfree 42
#include <linux/slab.h>
#include <linux/module.h>

MODULE_LICENSE("GPL");
