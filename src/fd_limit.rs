//! The open-file limit: raised to its hard maximum at start (as HAProxy and NGINX size theirs),
//! because every client, upstream and kept health connection is a descriptor.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raise the soft open-file limit to the hard one; returns the limit now in force.
pub fn raise() -> nix::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard)
}

/// The soft open-file limit (1024, the usual default, if it cannot be read).
pub fn open_files() -> usize {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| {
        usize::try_from(soft).unwrap_or(usize::MAX)
    })
}
