//! The embedded store's database file: opening it, remembering that it cannot be written,
//! and opening it again once it can.
//!
//! redb latches an I/O failure: after one, every operation on that [`Database`] fails
//! (`PreviousIo`) until it is closed and opened again, and what the failed commit left on
//! disk is only known after that reopen. [`DbHandle`] therefore holds the database behind a
//! lock so the store's writer thread can close and reopen it, and records the outage
//! ([`DbHandle::failed`]) so that writes are refused at once, and `/health` reports it,
//! until a durable probe write succeeds again ([`DbHandle::recovered`]).
//!
//! Under the `test-util` feature, [`faults::FaultyDisk`] puts a storage backend under the
//! database whose writes fail on demand, as a full disk's do, or whose syncs are slow.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::Database;

use super::StoreError;

/// How long a reopen waits for readers to let go of the old database before it gives up
/// (and tries again at the next probe).
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Where the database lives.
#[derive(Debug, Clone)]
pub(crate) enum Disk {
    /// The data directory's file, as redb opens it.
    File,
    /// The same file under a backend whose writes fail on demand.
    #[cfg(any(test, feature = "test-util"))]
    Faulty(faults::FaultyDisk),
}

/// Why the store cannot write: what `/health` and refused writes report.
#[derive(Debug, Clone, Copy)]
struct Outage {
    /// The failure was a full disk (ENOSPC).
    full: bool,
    /// When it started.
    since: Instant,
}

/// The open database (or none, while it is being reopened) and the store's write health.
#[derive(Debug)]
pub(crate) struct DbHandle {
    /// `None` only while the writer thread reopens it.
    db: RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    cache_bytes: usize,
    disk: Disk,
    /// `Some` from a failed write until a probe write succeeds.
    outage: Mutex<Option<Outage>>,
}

impl DbHandle {
    /// Opens (or creates) the database at `path`.
    ///
    /// # Errors
    /// As [`open_database`].
    pub(crate) fn open(path: &Path, cache_bytes: usize, disk: Disk) -> Result<Self, StoreError> {
        let db = open_database(path, cache_bytes, &disk)?;
        Ok(Self {
            db: RwLock::new(Some(Arc::new(db))),
            path: path.to_owned(),
            cache_bytes,
            disk,
            outage: Mutex::new(None),
        })
    }

    /// The database file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The open database.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] while it is being reopened.
    pub(crate) fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| self.cannot_write())
    }

    /// Refuses a write while the store is known not to be able to write.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] during an outage.
    pub(crate) fn check_writable(&self) -> Result<(), StoreError> {
        match self.outage() {
            Some(_) => Err(self.cannot_write()),
            None => Ok(()),
        }
    }

    /// The error for a write refused during an outage (or a read while reopening). It
    /// carries no detail beyond the class: the cause was logged when it happened.
    pub(crate) fn cannot_write(&self) -> StoreError {
        let (kind, what) = match self.outage() {
            Some(Outage { full: true, since }) => (
                std::io::ErrorKind::StorageFull,
                format!("the disk has been full for {:?}", since.elapsed()),
            ),
            Some(Outage { full: false, since }) => (
                std::io::ErrorKind::Other,
                format!("writes have been failing for {:?}", since.elapsed()),
            ),
            None => (
                std::io::ErrorKind::Other,
                "the store is being reopened".into(),
            ),
        };
        StoreError::Unavailable {
            store: "embedded",
            source: Box::new(std::io::Error::new(kind, what)),
        }
    }

    /// Records that `err` happened; a failure to use the disk starts an outage. Returns
    /// whether `err` was such a failure (the caller then asks the writer to recover).
    pub(crate) fn failed(&self, err: &StoreError) -> bool {
        if !matches!(err, StoreError::Unavailable { .. }) {
            return false;
        }
        let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        if outage.is_none() {
            tracing::error!(error.cause_chain = %crate::error::CauseChain(err),
                path = %self.path.display(), "the embedded store cannot write; refusing writes until a probe write succeeds");
        }
        let full = err.is_storage_full() || outage.is_some_and(|o| o.full);
        let since = outage.map_or_else(Instant::now, |o| o.since);
        *outage = Some(Outage { full, since });
        true
    }

    /// Ends the outage: a durable write has just succeeded.
    pub(crate) fn recovered(&self) {
        let outage = self
            .outage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(outage) = outage {
            tracing::warn!(after = ?outage.since.elapsed(), "the embedded store can write again");
        }
    }

    /// Whether the store is in an outage.
    pub(crate) fn in_outage(&self) -> bool {
        self.outage().is_some()
    }

    fn outage(&self) -> Option<Outage> {
        *self.outage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the database and opens it again: after an I/O failure redb refuses every
    /// operation until then, and only a fresh open reads what is really in the file.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if readers hold the old database too long, or it cannot
    /// be opened (the handle then has no database until a later reopen succeeds).
    pub(crate) fn reopen(&self) -> Result<Arc<Database>, StoreError> {
        let old = self
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(old) = old {
            let deadline = Instant::now() + RELEASE_WAIT;
            while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            // Dropped even if a reader still holds it: the file closes when that one ends,
            // and this open (or the next) succeeds then.
            drop(old);
        }
        let db = Arc::new(
            open_database(&self.path, self.cache_bytes, &self.disk).map_err(|e| match e {
                StoreError::Backend { store, source } => StoreError::Unavailable { store, source },
                other => other,
            })?,
        );
        *self.db.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&db));
        Ok(db)
    }
}

/// Opens (or creates) the redb file at `path` on `disk`.
///
/// # Errors
/// [`StoreError::Backend`] if the file cannot be opened or is not a redb database, or
/// another process has it open; [`StoreError::Unavailable`] on an I/O failure.
fn open_database(path: &Path, cache_bytes: usize, disk: &Disk) -> Result<Database, StoreError> {
    let builder = {
        let mut builder = redb::Builder::new();
        builder.set_cache_size(cache_bytes);
        builder
    };
    match disk {
        Disk::File => builder.create(path).map_err(super::embedded::backend),
        #[cfg(any(test, feature = "test-util"))]
        Disk::Faulty(faults) => {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(super::embedded::backend)?;
            let inner = redb::backends::FileBackend::new(file).map_err(super::embedded::backend)?;
            builder
                .create_with_backend(faults.backend(inner))
                .map_err(super::embedded::backend)
        }
    }
}

/// A disk that fails on demand, for tests of the store's honesty about failed writes.
#[cfg(any(test, feature = "test-util"))]
pub mod faults {
    use std::ops::Bound;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use redb::backends::FileBackend;
    use redb::{BackendError, StorageBackend};

    /// The switches of a [`FaultyDisk`].
    #[derive(Debug, Default)]
    struct Plan {
        /// Writes, resizes and syncs fail with ENOSPC without doing anything.
        full: AtomicBool,
        /// The next sync after a header write (the end of a commit) is done, then reported
        /// as failed: the commit is durable although redb says it failed.
        lie_after_header: AtomicBool,
        /// A header write has happened since `lie_after_header` was set.
        header_written: AtomicBool,
        /// How many operations failed on purpose.
        injected: AtomicUsize,
        /// Milliseconds every sync takes on top of its own time: a slow disk.
        sync_delay_ms: AtomicU64,
    }

    /// A handle on the disk under an embedded store opened with
    /// [`EmbeddedStore::open_on`](crate::store::embedded::EmbeddedStore::open_on): clones
    /// share the switches, so a test keeps one and flips them while the server runs.
    #[derive(Debug, Clone, Default)]
    pub struct FaultyDisk(Arc<Plan>);

    impl FaultyDisk {
        /// A disk that works until told otherwise.
        pub fn new() -> Self {
            Self::default()
        }

        /// From now on every write, resize and sync fails with ENOSPC and changes nothing,
        /// until [`free`](Self::free): a commit under way fails and is not durable.
        pub fn fill(&self) {
            self.0.full.store(true, Ordering::SeqCst);
        }

        /// Writes work again.
        pub fn free(&self) {
            self.0.full.store(false, Ordering::SeqCst);
        }

        /// The next commit reaches the disk in full, but its final sync reports ENOSPC:
        /// redb reports the commit as failed although it is durable.
        pub fn fail_next_commit_after_it_is_durable(&self) {
            self.0.header_written.store(false, Ordering::SeqCst);
            self.0.lie_after_header.store(true, Ordering::SeqCst);
        }

        /// Every sync takes `delay` longer from now on: a slow disk, which keeps commits
        /// (and the sends waiting for them) in flight for a while.
        pub fn slow_syncs(&self, delay: Duration) {
            let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            self.0.sync_delay_ms.store(ms, Ordering::SeqCst);
        }

        /// How many operations have failed on purpose so far.
        pub fn injected(&self) -> usize {
            self.0.injected.load(Ordering::SeqCst)
        }

        pub(crate) fn backend(&self, inner: FileBackend) -> FaultyBackend {
            FaultyBackend {
                inner,
                plan: Arc::clone(&self.0),
            }
        }
    }

    fn enospc() -> std::io::Error {
        std::io::Error::from_raw_os_error(28)
    }

    /// The file backend with the plan's failures; see [`FaultyDisk`].
    #[derive(Debug)]
    pub(crate) struct FaultyBackend {
        inner: FileBackend,
        plan: Arc<Plan>,
    }

    impl FaultyBackend {
        fn refuse_if_full(&self) -> Result<(), std::io::Error> {
            if self.plan.full.load(Ordering::SeqCst) {
                self.plan.injected.fetch_add(1, Ordering::SeqCst);
                return Err(enospc());
            }
            Ok(())
        }
    }

    impl StorageBackend for FaultyBackend {
        fn len(&self) -> Result<u64, std::io::Error> {
            self.inner.len()
        }

        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
            self.inner.read(offset, out)
        }

        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            self.refuse_if_full()?;
            self.inner.set_len(len)
        }

        fn sync_data(&self) -> Result<(), std::io::Error> {
            self.refuse_if_full()?;
            let delay = self.plan.sync_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                std::thread::sleep(Duration::from_millis(delay));
            }
            self.inner.sync_data()?;
            let plan = &self.plan;
            if plan.lie_after_header.load(Ordering::SeqCst)
                && plan.header_written.load(Ordering::SeqCst)
            {
                plan.lie_after_header.store(false, Ordering::SeqCst);
                plan.injected.fetch_add(1, Ordering::SeqCst);
                return Err(enospc());
            }
            Ok(())
        }

        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            self.refuse_if_full()?;
            self.inner.write(offset, data)?;
            if offset == 0 && self.plan.lie_after_header.load(Ordering::SeqCst) {
                self.plan.header_written.store(true, Ordering::SeqCst);
            }
            Ok(())
        }

        fn close(&self) -> Result<(), std::io::Error> {
            self.inner.close()
        }

        fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
            self.inner.try_lock_range(start, end)
        }

        fn try_lock_shared_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> Result<bool, BackendError> {
            self.inner.try_lock_shared_range(start, end)
        }

        fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
            self.inner.lock_range(start, end)
        }

        fn lock_shared_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> Result<(), BackendError> {
            self.inner.lock_shared_range(start, end)
        }

        fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
            self.inner.unlock_range(start, end)
        }

        fn query_lock_range(
            &self,
            start: Bound<u64>,
            end: Bound<u64>,
        ) -> Result<bool, BackendError> {
            self.inner.query_lock_range(start, end)
        }
    }
}
