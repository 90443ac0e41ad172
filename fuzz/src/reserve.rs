//! The fuzz targets' global allocator: very large allocations are served by
//! `MAP_NORESERVE` mappings, which reserve address space and take memory only as they are
//! written.
//!
//! Why: the `kafka-protocol` crate sizes a `Vec` from an array count read off the wire
//! before it reads any element (`Vec::with_capacity(n)`, `n` up to 2^31), so a frame of a
//! few bytes may ask for hundreds of gigabytes. The server's allocator (mimalloc over
//! Linux's default overcommit) hands such a request untouched virtual memory and the
//! decoder then fails on the missing elements (tests/kafka_listener.rs,
//! `a_huge_array_count_closes_only_its_connection`); AddressSanitizer's allocator
//! instead refuses it and the fuzzer reports an out-of-memory crash. Serving these
//! requests the way the server's host does keeps the fuzzer exploring the decoders.
//! (Under strict overcommit, `vm.overcommit_memory=2`, the server would abort on such a
//! frame: docs/kafka.md, "Limits".)
//!
//! Allocations of at least [`RESERVE_BYTES_MIN`] with an alignment of at most a page go
//! to `mmap`; everything else to the wrapped allocator. The choice depends only on the
//! layout, so `dealloc` and `realloc` always know where a block came from.

use std::alloc::{GlobalAlloc, Layout};

/// Allocations at least this large are reserved with `MAP_NORESERVE` (1 GiB: far above
/// anything Sluice allocates on purpose).
pub const RESERVE_BYTES_MIN: usize = 1 << 30;

/// The page alignment a mapping guarantees.
const PAGE_BYTES: usize = 4096;

/// Wraps the allocator `A` (the server's mimalloc, or the system's).
pub struct ReserveLarge<A>(pub A);

fn reserved(layout: &Layout) -> bool {
    layout.size() >= RESERVE_BYTES_MIN && layout.align() <= PAGE_BYTES
}

fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
    // no existing memory.
    let pointer = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if pointer == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        pointer.cast()
    }
}

// SAFETY: every block is either the wrapped allocator's (small or over-aligned layouts,
// passed through unchanged) or a mapping of exactly the layout's size (large layouts),
// and `reserved` tells which from the layout alone, as `GlobalAlloc` hands the same
// layout to `dealloc` that `alloc` got. Mappings are page-aligned and zeroed.
unsafe impl<A: GlobalAlloc> GlobalAlloc for ReserveLarge<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if reserved(&layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { self.0.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if reserved(&layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { self.0.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if reserved(&layout) {
            // SAFETY: `pointer` is a mapping of this size made by `map`.
            unsafe { libc::munmap(pointer.cast(), layout.size()) };
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { self.0.dealloc(pointer, layout) }
        }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (reserved(&layout), reserved(&new_layout)) {
            // SAFETY: forwarded with the caller's guarantees.
            (false, false) => unsafe { self.0.realloc(pointer, layout, new_size) },
            _ => {
                // SAFETY: a fresh block of the new layout, the old one's bytes copied
                // up to the smaller size, then the old block released as it was made.
                unsafe {
                    let fresh = self.alloc(new_layout);
                    if !fresh.is_null() {
                        std::ptr::copy_nonoverlapping(pointer, fresh, layout.size().min(new_size));
                        self.dealloc(pointer, layout);
                    }
                    fresh
                }
            }
        }
    }
}
