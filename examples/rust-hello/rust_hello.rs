// SPDX-License-Identifier: GPL-2.0

//! rust_hello: kmodvm's example Rust module. It greets in the kernel log (as often as the
//! `greetings` parameter says), and offers /dev/rust-hello, which reads back a greeting.
//!
//! Try it: `kmodvm run examples/rust-hello -p greetings=3 --keep`, then
//! `kmodvm exec -- cat /dev/rust-hello`.

use kernel::{
    fs::{File, Kiocb},
    iov::IovIterDest,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
};

module! {
    type: RustHello,
    name: "rust_hello",
    description: "kmodvm's example Rust module",
    license: "GPL",
    params: {
        greetings: u32 {
            default: 1,
            description: "How many greetings to print at load time",
        },
    },
}

#[pin_data(PinnedDrop)]
struct RustHello {
    #[pin]
    _dev: MiscDeviceRegistration<HelloDevice>,
}

impl kernel::InPlaceModule for RustHello {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let n = *module_parameters::greetings.value();
        for i in 1..=n {
            pr_info!("Hello from Rust! ({}/{})\n", i, n);
        }
        try_pin_init!(Self {
            _dev <- MiscDeviceRegistration::register(MiscDeviceOptions { name: c"rust-hello" }),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for RustHello {
    fn drop(self: Pin<&mut Self>) {
        pr_info!("Goodbye from Rust\n");
    }
}

struct HelloDevice;

#[vtable]
impl MiscDevice for HelloDevice {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        Ok(KBox::new(HelloDevice, GFP_KERNEL)?)
    }

    fn read_iter(mut kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        iov.simple_read_from_buffer(kiocb.ki_pos_mut(), b"Hello from Rust!\n")
    }
}
