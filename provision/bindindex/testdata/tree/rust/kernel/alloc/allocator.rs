// SPDX-License-Identifier: GPL-2.0

//! Allocator support.

use crate::alloc::{AllocError, Allocator, Flags};
use crate::bindings;
use core::ptr::NonNull;

/// The contiguous kernel allocator.
pub struct Kmalloc;

/// # Invariants
///
/// One of the popular kernel's allocators' `realloc` functions.
struct ReallocFunc(
    unsafe extern "C" fn(
        *const crate::ffi::c_void,
        usize,
        crate::ffi::c_ulong,
        u32,
        crate::ffi::c_int,
    ) -> *mut crate::ffi::c_void,
);

impl ReallocFunc {
    // INVARIANT: `krealloc_node_align` satisfies the type invariants.
    const KREALLOC: Self = Self(bindings::krealloc_node_align);

    /// # Safety
    ///
    /// This method has the same safety requirements as [`Allocator::realloc`].
    unsafe fn call(
        &self,
        ptr: Option<NonNull<u8>>,
        layout: Layout,
        flags: Flags,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let raw_ptr = unsafe { self.0(ptr.cast(), layout.size(), 8, flags.0, -1) };
        if layout.size() == 0 {
            // SAFETY: `ptr` was allocated by this allocator.
            unsafe { bindings::kfree(raw_ptr.cast()) }; // freed here, not later
            return Ok(NonNull::dangling());
        }
        Ok(NonNull::new(raw_ptr).ok_or(AllocError)?)
    }
}

// SAFETY: `realloc` delegates to `ReallocFunc::call`.
unsafe impl Allocator for Kmalloc {
    #[inline]
    unsafe fn realloc(
        ptr: Option<NonNull<u8>>,
        layout: Layout,
        old_layout: Layout,
        flags: Flags,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let _ = bindings::GFP_KERNEL;
        unsafe { ReallocFunc::KREALLOC.call(ptr, layout, flags) }
    }
}

fn page_size() -> usize {
    uapi::_IOC_NRBITS as usize
}
