// SPDX-License-Identifier: GPL-2.0
//! Does not compile: Arc::new takes the allocation flags too.
use kernel::prelude::*;
use kernel::sync::Arc;

module! {
    type: ArcUser,
    name: "rust_arc",
    license: "GPL",
}

struct ArcUser(Arc<u32>);

impl kernel::Module for ArcUser {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        Ok(ArcUser(Arc::new(5u32)?))
    }
}
