// SPDX-License-Identifier: GPL-2.0
//! Uses the kernel crate's configfs module, which the default kernel leaves out
//! (CONFIG_CONFIGFS_FS is off): the build fails on rustc's "found an item that was
//! configured out", and kmodvm's hint names the option and the kmodvm.yaml lines.
use kernel::configfs;
use kernel::prelude::*;

module! {
    type: CfgOut,
    name: "cfgout",
    license: "GPL",
}

struct CfgOut;

impl kernel::Module for CfgOut {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let size = core::mem::size_of::<configfs::Subsystem<()>>();
        pr_info!("a configfs subsystem takes {} bytes\n", size);
        Ok(CfgOut)
    }
}
