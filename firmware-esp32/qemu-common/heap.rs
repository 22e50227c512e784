//! The heap, with a high-water mark. The `GlobalAlloc` impl is this binary's only unsafe code: it
//! forwards to embedded-alloc's heap and counts the bytes in use.
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;

use critical_section::Mutex;
use embedded_alloc::LlffHeap;

pub struct CountingHeap {
    heap: LlffHeap,
    used: Mutex<Cell<(usize, usize)>>,
}

impl CountingHeap {
    pub const fn empty() -> Self {
        Self {
            heap: LlffHeap::empty(),
            used: Mutex::new(Cell::new((0, 0))),
        }
    }

    /// Hands `size` bytes at `start` to the heap. Call once, before any allocation.
    pub fn init(&self, start: usize, size: usize) {
        // SAFETY: called once at start-up with a static buffer nothing else uses.
        unsafe { self.heap.init(start, size) }
    }

    /// Starts a new high-water mark at the bytes in use now.
    #[allow(dead_code)] // qemu-dtls measures phases; qemu-smoke one peak
    pub fn reset_peak(&self) {
        critical_section::with(|cs| {
            let c = self.used.borrow(cs);
            let (used, _) = c.get();
            c.set((used, used));
        });
    }

    /// Bytes in use now and at most so far.
    pub fn usage(&self) -> (usize, usize) {
        critical_section::with(|cs| self.used.borrow(cs).get())
    }

    fn account(&self, delta: isize) {
        critical_section::with(|cs| {
            let c = self.used.borrow(cs);
            let (used, peak) = c.get();
            let used = used.wrapping_add_signed(delta);
            c.set((used, peak.max(used)));
        });
    }
}

// SAFETY: forwards every call unchanged to LlffHeap, a correct allocator; the bookkeeping touches
// only our counters.
unsafe impl GlobalAlloc for CountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { self.heap.alloc(layout) };
        if !p.is_null() {
            self.account(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { self.heap.dealloc(ptr, layout) };
        self.account(-(layout.size() as isize));
    }
}
