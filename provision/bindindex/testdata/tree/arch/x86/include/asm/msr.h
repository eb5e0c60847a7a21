/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _ASM_X86_MSR_H
#define _ASM_X86_MSR_H

typedef unsigned long long msr_t;
extern int msr_count[4];

#endif
