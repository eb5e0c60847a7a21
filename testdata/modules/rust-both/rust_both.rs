// SPDX-License-Identifier: GPL-2.0

//! rust_both: a Rust module that builds on the trixie kernel (6.12) and the sid kernel
//! (7.2) alike: it uses only the `module!` keys both accept (type, name, description,
//! license), `pr_info!` and `kernel::Module`.

use kernel::prelude::*;

module! {
    type: RustBoth,
    name: "rust_both",
    description: "kmodvm test module: Rust that builds on 6.12 and 7.2",
    license: "GPL",
}

struct RustBoth;

impl kernel::Module for RustBoth {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!("hello from Rust on both kernels\n");
        Ok(RustBoth)
    }
}

impl Drop for RustBoth {
    fn drop(&mut self) {
        pr_info!("goodbye\n");
    }
}
