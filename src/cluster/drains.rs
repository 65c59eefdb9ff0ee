//! The operator's drains: a drained node leaves the routing table at once, whatever its
//! health. A drain belongs to the node's name: it survives a reload (even one that moves the
//! node to a new address), and with `drain_file` set it is written down, so the process that
//! takes over on `--upgrade` (or a restart) starts with the same nodes drained.

use super::Cluster;
use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Why an operator action could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// No configured node has the name.
    #[error("no node named {0:?}")]
    NoSuchNode(String),
}

/// What a drain or undrain did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drained {
    /// Whether the node was not already in the asked-for condition.
    pub changed: bool,
    /// Whether the drain file now says so (`None`: no `drain_file` configured).
    pub persisted: Option<bool>,
}

impl Cluster {
    /// Drain (`true`) or undrain a node by name: a drained node leaves the routing table at
    /// once; requests in flight to it finish. With `drain_file`, the file is rewritten: a
    /// failure to write is logged and reported, and the drain applies all the same.
    pub fn set_drained(&self, name: &str, drained: bool) -> Result<Drained, DrainError> {
        // Under the reload lock: a reload swapping the members cannot lose this drain, and
        // two actions write the file in the order they applied.
        let _one_at_a_time = self.one_change_at_a_time();
        let members = self.members.load();
        let member = members
            .named(name)
            .ok_or_else(|| DrainError::NoSuchNode(name.to_string()))?;
        let changed = member.set_drained(drained);
        self.rebuild_table(false);
        let persisted = self.drains.as_ref().map(|file| {
            let names = members
                .list
                .iter()
                .filter(|m| m.is_drained())
                .map(|m| m.backend.name.as_str());
            match file.save(names) {
                Ok(()) => true,
                Err(e) => {
                    log::error!(
                        "drain_file {}: cannot write ({e}); node={name} drained={drained} applies \
                         in this process only",
                        file.path.display()
                    );
                    false
                }
            }
        });
        Ok(Drained { changed, persisted })
    }

    /// Drain the nodes the drain file lists (if `drain_file` is set). Called when probing
    /// starts — with `--upgrade`, once the listeners have been handed over, so a drain the
    /// old process wrote until then is seen — and before any node can be routed.
    pub fn restore_drains(&self) {
        let Some(file) = &self.drains else {
            return;
        };
        let _one_at_a_time = self.one_change_at_a_time();
        let names = file.load();
        let members = self.members.load();
        for name in &names {
            match members.named(name) {
                Some(member) => {
                    member.set_drained(true);
                    log::info!(
                        "node={name} stays drained (drain_file {})",
                        file.path.display()
                    );
                }
                None => log::warn!(
                    "drain_file {} lists {name:?}, which is not a configured node; ignored",
                    file.path.display()
                ),
            }
        }
        self.rebuild_table(false);
    }
}

/// The drain file: one drained node name per line.
#[derive(Debug)]
pub(super) struct DrainFile {
    path: PathBuf,
}

impl DrainFile {
    /// The file at `path` (read and written only when asked).
    pub fn new(path: PathBuf) -> DrainFile {
        DrainFile { path }
    }

    /// The drained names it lists; none if it does not exist yet. An unreadable file is
    /// logged and read as empty: a drain file must never stop the proxy from starting.
    pub fn load(&self) -> BTreeSet<String> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => {
                log::error!(
                    "drain_file {}: cannot read ({e}); starting with no node drained",
                    self.path.display()
                );
                BTreeSet::new()
            }
        }
    }

    /// Replace the file with `names`, atomically (written beside it, then renamed over it),
    /// so a process reading it never sees half a list.
    pub fn save<'a>(&self, names: impl Iterator<Item = &'a str>) -> std::io::Result<()> {
        let mut text = String::from("# Nodes drained through healthgate's admin listener.\n");
        for name in names {
            text.push_str(name);
            text.push('\n');
        }
        let temporary = sibling(&self.path, ".tmp");
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &self.path)
    }
}

/// `path` with `suffix` added to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = DrainFile::new(dir.path().join("drained"));
        assert!(file.load().is_empty());
        file.save(["mi-2", "mi 3"].into_iter()).expect("save");
        let names: Vec<String> = file.load().into_iter().collect();
        assert_eq!(names, ["mi 3", "mi-2"]);
        file.save(std::iter::empty()).expect("save");
        assert!(file.load().is_empty());
    }
}
