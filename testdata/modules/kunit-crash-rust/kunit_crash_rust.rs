// SPDX-License-Identifier: GPL-2.0
//! KUnit suite `kunit_crash_rust`, run at load time: test 1 passes; test 2 indexes past the
//! end of a vector, so Rust panics and the kernel turns the panic into a BUG: an oops that
//! kills only KUnit's thread for that test ("try faulted"); test 3 runs and passes. The
//! kernel is left tainted D.
use kernel::prelude::*;

module! {
    type: KunitCrashRust,
    name: "kunit_crash_rust",
    description: "kmodvm test module: a Rust KUnit test that panics",
    license: "GPL",
}

struct KunitCrashRust;

impl kernel::Module for KunitCrashRust {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        Ok(KunitCrashRust)
    }
}

#[kunit_tests(kunit_crash_rust)]
mod tests {
    use super::*;

    #[test]
    fn kunit_crash_rust_passes() {
        assert_eq!(1 + 1, 2);
    }

    #[test]
    fn kunit_crash_rust_panics() -> Result {
        let v = KVec::from_elem(1u8, 3, GFP_KERNEL)?;
        // black_box: an index the compiler cannot see is out of bounds.
        let i = core::hint::black_box(7usize);
        let x = v[i];
        assert_eq!(x, 1);
        Ok(())
    }

    #[test]
    fn kunit_crash_rust_after() {
        assert_eq!(2 + 2, 4);
    }
}
