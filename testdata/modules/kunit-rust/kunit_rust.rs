// SPDX-License-Identifier: GPL-2.0
//! KUnit suite `kunit_rust`, run at load time: two tests pass, one fails an assert_eq!
//! (the failure names kunit_rust.rs and the line of the assert), one is skipped. Loading
//! prints nothing else.
use kernel::prelude::*;

module! {
    type: KunitRust,
    name: "kunit_rust",
    description: "kmodvm test module: a Rust KUnit suite with a failing test",
    license: "GPL",
}

struct KunitRust;

impl kernel::Module for KunitRust {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        Ok(KunitRust)
    }
}

#[kunit_tests(kunit_rust)]
mod tests {
    use super::*;

    #[test]
    fn kunit_rust_passes() {
        assert_eq!(u8::MAX.checked_add(1), None);
    }

    #[test]
    fn kunit_rust_passes_with_result() -> Result {
        let v = KVec::from_elem(7u8, 3, GFP_KERNEL)?;
        assert_eq!(v.iter().map(|&b| u32::from(b)).sum::<u32>(), 21);
        Ok(())
    }

    #[test]
    fn kunit_rust_fails() {
        assert_eq!(u8::MAX.wrapping_add(1), u8::MAX);
    }

    // Rust KUnit in 7.2 has no kunit_skip(): a test whose #[cfg] is false is reported as
    // skipped, with no reason ("ok 4 kunit_rust_skipped # SKIP ").
    #[test]
    #[cfg(not(all()))]
    fn kunit_rust_skipped() {
        assert!(false);
    }
}
