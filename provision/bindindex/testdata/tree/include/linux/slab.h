/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _LINUX_SLAB_H
#define _LINUX_SLAB_H

#include <linux/gfp.h>

void kfree(const void *objp);

#ifdef CONFIG_SLUB_TINY
void *kmalloc_tiny(size_t size, gfp_t flags);
#endif

static __always_inline __alloc_size(1) void *
kmalloc_array_noprof(size_t n, size_t size, gfp_t flags)
{
	return kmalloc_noprof(n * size, flags);
}

#endif	/* _LINUX_SLAB_H */
