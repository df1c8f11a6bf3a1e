//! What makes a flushed group survive a power cut, not only a crash of the process.
//!
//! sled's flush writes the log with `pwrite` and waits with `sync_file_range`, which
//! neither flushes the drive's write cache nor records a grown file's new size, and it
//! writes items too large for a segment as separate blob files without syncing them at
//! all. After each flush the log therefore calls `fdatasync` on sled's data file and
//! `fsync` on every new blob file and on the directories naming them — what a database
//! does when it commits (PostgreSQL's `fdatasync` of its write-ahead log).

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub(crate) struct DiskSync {
    data: File,
    blobs: PathBuf,
    blobs_seen: HashSet<OsString>,
    blobs_modified: Option<SystemTime>,
}

impl DiskSync {
    /// Opens sled's data file in `dir` (sled has created it) and makes the directory
    /// entries leading to it durable.
    pub(crate) fn open(dir: &Path) -> std::io::Result<Self> {
        let data = File::open(dir.join("db"))?;
        File::open(dir)?.sync_all()?;
        let mut sync = Self { data, blobs: dir.join("blobs"), blobs_seen: HashSet::new(), blobs_modified: None };
        sync.sync_blobs()?;
        Ok(sync)
    }

    /// Called after every flush, before anything is acknowledged.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        self.data.sync_data()?;
        self.sync_blobs()
    }

    /// Syncs blob files not synced before; costs one `stat` when none was added.
    fn sync_blobs(&mut self) -> std::io::Result<()> {
        let modified = match std::fs::metadata(&self.blobs) {
            Ok(m) => m.modified()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if self.blobs_modified == Some(modified) {
            return Ok(());
        }
        let mut present = HashSet::new();
        for entry in std::fs::read_dir(&self.blobs)? {
            let entry = entry?;
            let name = entry.file_name();
            if !self.blobs_seen.contains(&name) {
                File::open(entry.path())?.sync_all()?;
            }
            present.insert(name);
        }
        File::open(&self.blobs)?.sync_all()?;
        self.blobs_seen = present;
        self.blobs_modified = Some(modified);
        Ok(())
    }
}
