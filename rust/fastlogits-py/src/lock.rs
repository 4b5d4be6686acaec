//! A mutex for native objects shared by Python threads, that survives `fork`.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

/// A `Mutex` that records which process holds it. After a `fork`, a lock held by a thread of the parent
/// (a thread that does not exist in the child) would block the child forever: it is reported as orphaned
/// instead, and the caller works around it (a pipeline uses fresh state, which is always correct).
pub(crate) struct ForkSafeMutex<T> {
    inner: Mutex<T>,
    /// The process id of the holder, 0 when free.
    owner: AtomicU32,
}

pub(crate) struct Guard<'a, T> {
    guard: MutexGuard<'a, T>,
    owner: &'a AtomicU32,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.owner.store(0, Ordering::Release);
    }
}

/// Why [`ForkSafeMutex::try_lock`] got no guard.
pub(crate) enum Busy {
    /// Another thread of this process holds it.
    Held,
    /// A thread of the parent process held it when this process was forked: it will never be released.
    Orphaned,
}

impl<T> ForkSafeMutex<T> {
    pub(crate) fn new(value: T) -> Self {
        ForkSafeMutex { inner: Mutex::new(value), owner: AtomicU32::new(0) }
    }

    fn guard<'a>(&'a self, guard: MutexGuard<'a, T>) -> Guard<'a, T> {
        self.owner.store(std::process::id(), Ordering::Release);
        Guard { guard, owner: &self.owner }
    }

    fn busy(&self) -> Busy {
        match self.owner.load(Ordering::Acquire) {
            0 => Busy::Held, // being released, or taken by a thread of this process that has not marked it yet
            pid if pid == std::process::id() => Busy::Held,
            _ => Busy::Orphaned,
        }
    }

    pub(crate) fn try_lock(&self) -> Result<Guard<'_, T>, Busy> {
        match self.inner.try_lock() {
            Ok(g) => Ok(self.guard(g)),
            Err(TryLockError::Poisoned(e)) => Ok(self.guard(e.into_inner())),
            Err(TryLockError::WouldBlock) => Err(self.busy()),
        }
    }

    /// Waits for the lock (call it with the GIL released); `None` if it is orphaned (see [`Busy`]).
    pub(crate) fn lock(&self) -> Option<Guard<'_, T>> {
        match self.try_lock() {
            Ok(g) => Some(g),
            Err(Busy::Orphaned) => None,
            Err(Busy::Held) => Some(self.guard(self.inner.lock().unwrap_or_else(|e| e.into_inner()))),
        }
    }
}
