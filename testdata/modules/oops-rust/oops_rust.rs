// SPDX-License-Identifier: GPL-2.0

//! oops_rust: its init reads element `index` (default 7) of a three-element array. Rust
//! panics ("index out of bounds"), the kernel turns the panic into a BUG: an Oops, taint D,
//! and the module is left half-loaded, in state Loading, for good.

use kernel::prelude::*;

module! {
    type: OopsRust,
    name: "oops_rust",
    description: "kmodvm test module: a Rust init that panics",
    license: "GPL",
    params: {
        index: u32 {
            default: 7,
            description: "Which element of a three-element array init reads",
        },
    },
}

struct OopsRust;

impl kernel::Module for OopsRust {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let v = [1u32, 2, 3];
        let i = *module_parameters::index.value() as usize;
        pr_info!("reading element {}\n", i);
        let x = v[i];
        pr_info!("element {} is {}\n", i, x);
        Ok(OopsRust)
    }
}
