//! [`PoolBytes`]: bytes the daemon served, in the one type that wipes itself when dropped.
//!
//! Every copy of served bytes on the client side (a fetched batch, a requester's slice, a
//! prefetch buffer, a CoAP answer kept for duplicates) is a `PoolBytes`, so wiping holds by
//! construction: there is no `Clone`, and `Debug` prints the length, never the bytes.

use alloc::vec::Vec;
use core::fmt;
use core::ops::{Deref, DerefMut};

use zeroize::{Zeroize, Zeroizing};

/// Pool bytes, zeroized on drop. Not `Clone`: a copy would be a second consumer of the same
/// bytes; copying out is explicit ([`PoolBytes::split_off_front`], [`PoolBytes::copy_from`]).
#[derive(Default, PartialEq, Eq)]
pub struct PoolBytes(Zeroizing<Vec<u8>>);

impl PoolBytes {
    /// Takes ownership of `v` (no copy: the same heap block is wiped on drop).
    pub fn new(v: Vec<u8>) -> Self {
        PoolBytes(Zeroizing::new(v))
    }

    /// `n` zero bytes, to be filled in place.
    pub fn zeroed(n: usize) -> Self {
        PoolBytes::new(alloc::vec![0u8; n])
    }

    /// A wiping copy of `b` (for a caller whose bytes live in a buffer it wipes itself).
    pub fn copy_from(b: &[u8]) -> Self {
        PoolBytes::new(b.to_vec())
    }

    /// Moves the first `n` bytes into a new `PoolBytes` and wipes them here: afterwards the two
    /// values hold disjoint bytes. `None` (and nothing moved) if fewer than `n` are held.
    pub fn split_off_front(&mut self, n: usize) -> Option<PoolBytes> {
        if n > self.0.len() {
            return None;
        }
        let front = PoolBytes::copy_from(&self.0[..n]);
        // Wipe the moved bytes before shifting, so no stale copy stays in the spare capacity.
        self.0[..n].zeroize();
        let len = self.0.len();
        self.0.copy_within(n.., 0);
        self.0[len - n..].zeroize();
        self.0.truncate(len - n);
        Some(front)
    }

    /// Appends a wiping copy of `more`. The old block is wiped if the vector has to grow.
    pub fn extend_from(&mut self, more: &[u8]) {
        if self.0.capacity() - self.0.len() < more.len() {
            let mut v = Vec::with_capacity(self.0.len() + more.len());
            v.extend_from_slice(&self.0);
            v.extend_from_slice(more);
            // The old block is dropped through Zeroizing, so it is wiped.
            self.0 = Zeroizing::new(v);
        } else {
            self.0.extend_from_slice(more);
        }
    }
}

impl Deref for PoolBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl DerefMut for PoolBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl AsRef<[u8]> for PoolBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for PoolBytes {
    fn from(v: Vec<u8>) -> Self {
        PoolBytes::new(v)
    }
}

impl From<Zeroizing<Vec<u8>>> for PoolBytes {
    fn from(v: Zeroizing<Vec<u8>>) -> Self {
        PoolBytes(v)
    }
}

impl From<PoolBytes> for Zeroizing<Vec<u8>> {
    fn from(b: PoolBytes) -> Self {
        b.0
    }
}

impl fmt::Debug for PoolBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PoolBytes({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_off_front_moves_disjoint_bytes() {
        let mut b = PoolBytes::new((0..10u8).collect());
        let a = b.split_off_front(4).unwrap();
        assert_eq!(&*a, &[0, 1, 2, 3]);
        assert_eq!(&*b, &[4, 5, 6, 7, 8, 9]);
        assert!(b.split_off_front(7).is_none());
        assert_eq!(b.len(), 6);
        assert_eq!(format!("{a:?}"), "PoolBytes(4 bytes)");
    }

    #[test]
    fn extend_keeps_order() {
        let mut b = PoolBytes::copy_from(&[1, 2]);
        b.extend_from(&[3; 100]);
        assert_eq!(b.len(), 102);
        assert_eq!(&b[..3], &[1, 2, 3]);
    }
}
