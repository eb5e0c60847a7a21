/* SPDX-License-Identifier: GPL-2.0 */
/* A stand-in for the kernel's elf.h: the tests only need it to exist. */
