//! Fork generations: telling the process apart from the ones it forked, without trusting pids
//! and without taking, in a child, a lock another thread held when `fork()` was called.
//!
//! * [`generation`] counts forks: a `pthread_atfork` child handler, registered once per process,
//!   adds one in every child. A child, and every later descendant, sees a generation its
//!   ancestors never had, even when its pid recycles an ancestor's.
//! * [`PerFork`] holds one value per generation. A child gets a fresh value and never touches
//!   the parent's one, whose lock may be held forever by a thread that was not copied; that old
//!   value is left in memory, not dropped (dropping it would need the lock). Its pool bytes
//!   were wiped by MADV_WIPEONFORK (see [`WipeOnFork`]).
//! * [`WipeOnFork`] is a buffer on pages marked MADV_WIPEONFORK: a child sees them zeroed, so no
//!   copy of the parent's batched bytes exists in the child at all.
//!
//! The only `unsafe` of the provider outside `ffi`: atfork registration, one atomic pointer to
//! leaked boxes, and mmap/madvise/munmap.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Once;

use zeroize::Zeroize;

static GENERATION: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();

extern "C" fn in_child() {
    // Async-signal-safe: one atomic add, no allocation, no lock.
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Registers the atfork handler (once per process). Call before the first byte is fetched.
pub fn register() {
    REGISTER.call_once(|| {
        // SAFETY: `in_child` is a plain function that is async-signal-safe. glibc's
        // pthread_atfork records this library's DSO handle, so the handler is removed if OpenSSL
        // ever unloads the provider.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        if rc != 0 {
            // Without the handler, forks are still caught by the pid check of `source`.
            eprintln!("qeaas-provider: pthread_atfork failed ({rc}): fork detection by pid only");
        }
    });
}

/// The current fork generation: 0 in the process that loaded the provider, and different in
/// every process forked from it since [`register`].
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

struct Slot<T> {
    generation: u64,
    value: T,
}

/// One `T` per fork generation, made by `F`. Lock-free to get: a child never waits for
/// anything its parent held.
pub struct PerFork<T, F: Fn() -> T> {
    cur: AtomicPtr<Slot<T>>,
    make: F,
}

impl<T, F: Fn() -> T> PerFork<T, F> {
    /// Makes this generation's value now; `make` makes each new generation's.
    pub fn new(make: F) -> Self {
        let slot = Box::new(Slot {
            generation: generation(),
            value: make(),
        });
        PerFork {
            cur: AtomicPtr::new(Box::into_raw(slot)),
            make,
        }
    }

    /// This generation's value (made on first use in a new generation).
    pub fn get(&self) -> &T {
        let g = generation();
        loop {
            let p = self.cur.load(Ordering::Acquire);
            // SAFETY: `cur` always points to a live, leaked `Slot`, freed only in `drop`.
            let slot = unsafe { &*p };
            if slot.generation == g {
                return &slot.value;
            }
            let new = Box::into_raw(Box::new(Slot {
                generation: g,
                value: (self.make)(),
            }));
            match self
                .cur
                .compare_exchange(p, new, Ordering::AcqRel, Ordering::Acquire)
            {
                // The old slot belongs to the parent: leaked, never dropped (see module docs).
                // SAFETY: `new` was just published and lives until `drop`.
                Ok(_) => return unsafe { &(*new).value },
                // Another thread of this child won; ours was never shared.
                // SAFETY: `new` came from `Box::into_raw` above and was not published.
                Err(_) => drop(unsafe { Box::from_raw(new) }),
            }
        }
    }
}

impl<T, F: Fn() -> T> Drop for PerFork<T, F> {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no other reference exists; the slot came from `Box::into_raw`.
        drop(unsafe { Box::from_raw(*self.cur.get_mut()) });
    }
}

impl<T, F: Fn() -> T> std::fmt::Debug for PerFork<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerFork").finish_non_exhaustive()
    }
}

// SAFETY: `PerFork` hands out `&T` to any thread and drops `T` on drop: the bounds of `&T` being
// shared (Sync) and `T` moving between threads (Send).
unsafe impl<T: Send + Sync, F: Fn() -> T + Sync> Sync for PerFork<T, F> {}
// SAFETY: as above.
unsafe impl<T: Send, F: Fn() -> T + Send> Send for PerFork<T, F> {}

/// A fixed-size byte buffer on its own anonymous pages marked MADV_WIPEONFORK (Linux 4.14+): a
/// forked child reads zeros there. Zeroized and unmapped on drop. If madvise is refused, the
/// buffer still works: the fork generation alone keeps the child from using its bytes.
pub struct WipeOnFork {
    ptr: *mut u8,
    len: usize,
    map_len: usize,
}

// SAFETY: the buffer is plain memory owned by this value.
unsafe impl Send for WipeOnFork {}
// SAFETY: shared access is read-only through `&[u8]`.
unsafe impl Sync for WipeOnFork {}

impl WipeOnFork {
    /// `len` zero bytes (at least one page is mapped).
    pub fn new(len: usize) -> std::io::Result<Self> {
        let page = page_size();
        let map_len = len.max(1).div_ceil(page) * page;
        // SAFETY: an anonymous private mapping, checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `p..p+map_len` is the mapping just made.
        unsafe { libc::madvise(p, map_len, libc::MADV_WIPEONFORK) };
        Ok(WipeOnFork {
            ptr: p.cast(),
            len,
            map_len,
        })
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096).max(4096)
}

impl Deref for WipeOnFork {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len <= map_len` bytes of our mapping, initialised (zero-filled by mmap).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl DerefMut for WipeOnFork {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for WipeOnFork {
    fn drop(&mut self) {
        self.deref_mut().zeroize();
        // SAFETY: our mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.map_len) };
    }
}

impl std::fmt::Debug for WipeOnFork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WipeOnFork({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_generation_gets_a_new_value_without_the_old_lock() {
        register();
        let made = AtomicU64::new(0);
        let p = PerFork::new(|| std::sync::Mutex::new(made.fetch_add(1, Ordering::Relaxed)));
        // The parent's lock, held forever (as by a thread fork did not copy).
        let held = p.get().lock().unwrap();
        assert_eq!(*held, 0);
        std::mem::forget(held);
        GENERATION.fetch_add(1, Ordering::Relaxed);
        let v = p
            .get()
            .try_lock()
            .expect("the new generation's lock is free");
        assert_eq!(*v, 1);
    }

    /// In a real child: the buffer reads as zeros and the generation moved on. The child only
    /// reads memory and calls `_exit` (no allocation, no lock: the test harness has threads).
    #[test]
    fn a_forked_child_sees_a_wiped_buffer_and_a_new_generation() {
        register();
        let mut b = WipeOnFork::new(10000).unwrap();
        b.fill(0xAA);
        let g = generation();
        // SAFETY: the child runs only async-signal-safe code and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let wiped = b.iter().all(|&x| x == 0);
            let moved = generation() != g;
            // SAFETY: ends the child at once, running no destructor of the parent's state.
            unsafe { libc::_exit(i32::from(!wiped) | i32::from(!moved) << 1) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status));
        let code = libc::WEXITSTATUS(status);
        assert_eq!(code & 1, 0, "the child saw the parent's bytes");
        assert_eq!(code & 2, 0, "the child's fork generation did not change");
        assert!(
            b.iter().all(|&x| x == 0xAA),
            "the parent's bytes are intact"
        );
    }

    #[test]
    fn wipe_on_fork_buffer_is_usable() {
        let mut b = WipeOnFork::new(100).unwrap();
        assert_eq!(b.len(), 100);
        b[99] = 1;
        assert!(b[..99].iter().all(|&x| x == 0));
    }
}
