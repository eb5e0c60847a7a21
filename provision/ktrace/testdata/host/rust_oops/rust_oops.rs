// SPDX-License-Identifier: GPL-2.0
//! A module that indexes past the end of an array: a test fixture for crash traces.

use kernel::prelude::*;

module! {
    type: RustOops,
    name: "rust_oops",
    license: "GPL",
}

struct RustOops;

impl kernel::Module for RustOops {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let numbers = [1u32, 2, 3];
        let i = core::hint::black_box(7);
        pr_info!("reading element {i}\n");
        let n = numbers[i];
        pr_info!("got {n}\n");
        Ok(RustOops)
    }
}
