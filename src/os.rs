//! What the operating system lends the process, and how to tell its refusals from a node's.
//!
//! The open-file limit is raised to its hard maximum at start (as HAProxy and NGINX size
//! theirs), because every client, upstream and kept health connection is a descriptor. When
//! the process still runs out — of descriptors, ephemeral ports, buffers — a connect fails
//! through no fault of the node it was meant for: [`is_local_error`] says so, and such a
//! failure never evicts a node (a burst of them would otherwise empty the routing table).

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use std::io;

/// Raise the soft open-file limit to the hard one; returns the limit now in force.
pub fn raise_open_files() -> nix::Result<u64> {
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

/// Whether `error` is this host's own shortage rather than anything the remote end did:
/// out of file descriptors (`EMFILE`, `ENFILE`), of ephemeral ports or local addresses
/// (`EADDRNOTAVAIL`, `EADDRINUSE` on an implicit bind), of buffers or memory (`ENOBUFS`,
/// `ENOMEM`).
pub fn is_local_error(error: &io::Error) -> bool {
    use nix::errno::Errno;
    let Some(code) = error.raw_os_error() else {
        return false;
    };
    [
        Errno::EMFILE,
        Errno::ENFILE,
        Errno::EADDRNOTAVAIL,
        Errno::EADDRINUSE,
        Errno::ENOBUFS,
        Errno::ENOMEM,
    ]
    .iter()
    .any(|e| *e as i32 == code)
}

/// Whether `error`, or any error it was caused by, is a local shortage ([`is_local_error`]).
pub fn caused_locally(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<io::Error>().is_some_and(is_local_error) {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortages_are_local_and_refusals_are_not() {
        let os = |errno: nix::errno::Errno| io::Error::from_raw_os_error(errno as i32);
        assert!(is_local_error(&os(nix::errno::Errno::EMFILE)));
        assert!(is_local_error(&os(nix::errno::Errno::EADDRNOTAVAIL)));
        assert!(!is_local_error(&os(nix::errno::Errno::ECONNREFUSED)));
        assert!(!is_local_error(&os(nix::errno::Errno::ETIMEDOUT)));
        assert!(!is_local_error(&io::Error::other("not from the kernel")));
    }

    #[test]
    fn a_shortage_is_found_behind_wrapping_errors() {
        #[derive(Debug)]
        struct Wrapper(io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "connect failed")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let emfile = Wrapper(io::Error::from_raw_os_error(
            nix::errno::Errno::EMFILE as i32,
        ));
        assert!(caused_locally(&emfile));
        let refused = Wrapper(io::Error::from_raw_os_error(
            nix::errno::Errno::ECONNREFUSED as i32,
        ));
        assert!(!caused_locally(&refused));
    }
}
