//! The hardware of qemu `virt` this firmware touches, and its only `unsafe` besides the heap:
//! the CLINT timer, the virtio-mmio slots, identity-mapped DMA for virtio-drivers, and stack
//! painting.
#![allow(unsafe_code)]

use core::ptr::NonNull;

use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

/// CLINT `mtime` (10 MHz on `virt`; with `-icount shift=0` it advances 1 ns per instruction).
const MTIME: usize = 0x0200_bff8;

/// Milliseconds since boot.
pub fn now_ms() -> u64 {
    // SAFETY: MTIME is the CLINT's always-mapped, read-only-here 64-bit counter on `virt`.
    let (lo, hi) = unsafe {
        loop {
            let hi = core::ptr::read_volatile((MTIME + 4) as *const u32);
            let lo = core::ptr::read_volatile(MTIME as *const u32);
            if core::ptr::read_volatile((MTIME + 4) as *const u32) == hi {
                break (lo, hi);
            }
        }
    };
    ((u64::from(hi) << 32) | u64::from(lo)) / 10_000
}

/// The virtio-net device among `virt`'s eight virtio-mmio slots.
pub fn find_net() -> Option<MmioTransport<'static>> {
    for i in 0..8 {
        let addr = 0x1000_1000 + i * 0x1000;
        // SAFETY: `virt` maps a virtio-mmio register block of 0x1000 bytes at each slot, used
        // by nothing else here; a transport is made once per slot.
        let t = unsafe { MmioTransport::new(NonNull::new(addr as *mut VirtIOHeader)?, 0x1000) };
        if let Ok(t) = t {
            if t.device_type() == DeviceType::Network {
                return Some(t);
            }
        }
    }
    None
}

/// DMA memory: a bump arena apart from the heap (so virtqueues don't count as device heap).
/// Physical = virtual on `virt` without paging.
const DMA_PAGES: usize = 32;
#[repr(C, align(4096))]
struct Dma([u8; DMA_PAGES * 4096]);
static mut DMA: Dma = Dma([0; DMA_PAGES * 4096]);
static mut DMA_NEXT: usize = 0;

pub struct VirtHal;

// SAFETY: identity mapping (no MMU in use); DMA pages are zeroed, page aligned, never reused.
unsafe impl Hal for VirtHal {
    fn dma_alloc(pages: usize, _dir: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // SAFETY: single hart, no interrupts: nothing else touches the bump pointer.
        unsafe {
            let next = DMA_NEXT;
            assert!(next + pages <= DMA_PAGES, "DMA arena exhausted");
            DMA_NEXT = next + pages;
            let p = (core::ptr::addr_of_mut!(DMA) as *mut u8).add(next * 4096);
            (p as PhysAddr, NonNull::new_unchecked(p))
        }
    }
    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        0
    }
    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("non-null MMIO address")
    }
    unsafe fn share(buffer: NonNull<[u8]>, _dir: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as PhysAddr
    }
    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _dir: BufferDirection) {}
}

const PAINT: u32 = 0x5afe_c0de;

extern "C" {
    static __eheap: u8;
    static _stack_start: u8;
}

/// The top of the stack (riscv-rt's `_stack_start`): stack depth is measured from here.
pub fn stack_top() -> usize {
    // SAFETY: only the symbol's address is taken.
    core::ptr::addr_of!(_stack_start) as usize
}

fn sp() -> usize {
    let sp: usize;
    // SAFETY: reads the stack pointer register.
    unsafe { core::arch::asm!("mv {}, sp", out(reg) sp) };
    sp
}

/// Paints the free stack (below the current frame, down to `budget` bytes under `top`) so
/// that [`stack_peak`] can find how deep it was used. Returns the painted range's top.
pub fn paint_stack(budget: usize) -> (usize, usize) {
    let top = sp() - 256;
    // SAFETY: `__eheap` is riscv-rt's end of .bss and its (empty) heap section; the stack grows down towards it.
    let floor = core::ptr::addr_of!(__eheap) as usize;
    let low = top.saturating_sub(budget).max(floor) & !3;
    let mut a = low;
    while a < top {
        // SAFETY: [low, top) lies between the static data and the live stack frames.
        unsafe { core::ptr::write_volatile(a as *mut u32, PAINT) };
        a += 4;
    }
    (low, top)
}

/// The lowest address written since [`paint_stack`]: the stack's deepest point.
pub fn stack_low_water(low: usize, top: usize) -> usize {
    let mut a = low;
    // SAFETY: same range as painted.
    while a < top && unsafe { core::ptr::read_volatile(a as *const u32) } == PAINT {
        a += 4;
    }
    a
}
