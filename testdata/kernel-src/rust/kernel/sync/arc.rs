// SPDX-License-Identifier: GPL-2.0
//! A stand-in for the kernel crate's sync/arc.rs: the tests only need it to exist.
