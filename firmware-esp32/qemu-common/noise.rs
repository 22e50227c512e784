//! The stand-in "TRNG" of the qemu runs (qemu `virt` has none) and the instruction counter.
//! A fixed xorshift stream: it lets the pool and its health tests run, and is not entropy.

use qeaas_device::RandomSource;

pub struct XorShift(pub u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn bytes(&mut self, out: &mut [u8]) {
        for b in out {
            *b = (self.next() >> 24) as u8;
        }
    }
}

impl RandomSource for XorShift {
    fn next_u32(&mut self) -> u32 {
        (self.next() >> 16) as u32
    }
}

/// Instructions retired so far (`minstret`; with `-icount shift=0`, one per instruction).
pub fn instret() -> u64 {
    riscv::register::minstret::read64()
}
