// SPDX-License-Identifier: GPL-2.0
//! Does not compile: a type error kmodvm must report with host paths (exit 3).
use kernel::prelude::*;

module! {
    type: Broken,
    name: "broken",
    license: "GPL",
}

struct Broken;

impl kernel::Module for Broken {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let n: u32 = "not a number";
        pr_info!("{}\n", n);
        Ok(Broken)
    }
}
