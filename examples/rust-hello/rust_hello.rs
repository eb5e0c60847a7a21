// SPDX-License-Identifier: GPL-2.0

//! rust_hello: kmodvm's example Rust module. It greets in the kernel log (as often as the
//! `greetings` parameter says), and offers /dev/rust-hello, which reads back a greeting.
//!
//! Try it: `kmodvm run examples/rust-hello -p greetings=3 --keep`, then
//! `kmodvm exec -- cat /dev/rust-hello`. Its KUnit suite `rust_hello` runs at load time:
//! `kmodvm test examples/rust-hello`.

use kernel::{
    fmt,
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
            pr_info!("{}\n", Greeting { i, n });
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

/// The `i`th of the `n` greetings printed at load time, kept apart from `init` so the
/// KUnit suite can check the text the end-to-end tests look for.
struct Greeting {
    i: u32,
    n: u32,
}

impl fmt::Display for Greeting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hello from Rust! ({}/{})", self.i, self.n)
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

#[kunit_tests(rust_hello)]
mod tests {
    use super::*;
    use kernel::str::CString;

    #[test]
    fn greeting_counts_from_one() -> Result {
        let s = CString::try_from_fmt(fmt!("{}", Greeting { i: 1, n: 2 }))?;
        assert_eq!(s.to_bytes(), b"Hello from Rust! (1/2)");
        Ok(())
    }

    #[test]
    fn greeting_with_many_digits() -> Result {
        let s = CString::try_from_fmt(fmt!("{}", Greeting { i: 10, n: 4096 }))?;
        assert_eq!(s.to_bytes(), b"Hello from Rust! (10/4096)");
        Ok(())
    }
}
