/* SPDX-License-Identifier: GPL-2.0-only */
/* A stand-in for the kernel's module.h: the tests only need it to exist. */
