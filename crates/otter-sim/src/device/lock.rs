//! One running agent per device directory: an OS advisory lock on
//! `DIR/agent.lock`.
//!
//! The lock is held for as long as the agent runs and is released by the
//! operating system when its process ends, however it ends (`kill -9`
//! included), so a stale lock cannot outlive its holder. The lock file
//! itself is never removed and holds nothing; who holds it (pid, URL) is in
//! the agent's `agent.json`, which [`DeviceLock::presence`] reads back only
//! while the lock is taken: a leftover `agent.json` whose process is gone
//! says nothing.
//!
//! On Unix the lock is `flock(2)`, on Windows `LockFileEx`, through the
//! `fs4` crate.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// The lock file's name inside a device directory.
pub const LOCK_FILE: &str = "agent.lock";

/// The file a running agent writes into the device directory: its pid, URL
/// and what runs (removed on a clean stop; ignored unless the lock is held).
pub const AGENT_FILE: &str = "agent.json";

/// Why the device directory could not be locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another agent runs this device (the caller's fault: stop it first, or
    /// use another directory).
    #[error("{} is already running{}: stop it first, or create another device", dir.display(), describe(.holder.as_ref()))]
    AlreadyRunning {
        /// The device directory.
        dir: PathBuf,
        /// What the running agent recorded about itself, when it has yet.
        holder: Option<Holder>,
    },
    /// The lock file could not be opened or locked (a file-system fault).
    #[error("{}: cannot lock the device: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl LockError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::AlreadyRunning { .. } => "device_running",
            Self::Io { .. } => "lock_io",
        }
    }
}

fn describe(h: Option<&Holder>) -> String {
    match h {
        Some(h) => format!(
            " (agent pid {}, serving {})",
            h.pid,
            h.url.as_deref().unwrap_or("no URL yet")
        ),
        None => " (by an agent that has not recorded its pid yet)".into(),
    }
}

/// The running agent, as its `agent.json` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its process id.
    pub pid: u32,
    /// The API's base URL.
    pub url: Option<String>,
    /// The whole `agent.json` document.
    pub record: serde_json::Value,
}

/// Whether an agent runs a device directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentPresence {
    /// No agent holds the lock.
    Stopped,
    /// An agent holds the lock; `None` until it has written `agent.json`.
    Running(Option<Holder>),
}

/// The held lock of a device directory; dropping it releases the lock.
#[derive(Debug)]
pub struct DeviceLock {
    _file: File,
}

fn open(dir: &Path) -> Result<File, LockError> {
    let path = dir.join(LOCK_FILE);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| LockError::Io { path, source })
}

fn read_holder(dir: &Path) -> Option<Holder> {
    let text = std::fs::read_to_string(dir.join(AGENT_FILE)).ok()?;
    let record: serde_json::Value = serde_json::from_str(&text).ok()?;
    let pid = u32::try_from(record.get("pid")?.as_u64()?).ok()?;
    let url = record
        .get("url")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string);
    Some(Holder { pid, url, record })
}

impl DeviceLock {
    /// Takes the lock of `dir` without waiting.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let file = open(dir)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Ok(Self { _file: file }),
            Err(fs4::TryLockError::WouldBlock) => Err(LockError::AlreadyRunning {
                dir: dir.to_path_buf(),
                holder: read_holder(dir),
            }),
            Err(fs4::TryLockError::Error(source)) => Err(LockError::Io {
                path: dir.join(LOCK_FILE),
                source,
            }),
        }
    }

    /// Whether an agent runs `dir` now (`Ok(None)`: none does), and what it
    /// recorded about itself. Asks the lock, not the pid in `agent.json`.
    pub fn presence(dir: &Path) -> Result<AgentPresence, LockError> {
        if !dir.join(LOCK_FILE).exists() {
            return Ok(AgentPresence::Stopped);
        }
        match Self::acquire(dir) {
            Ok(_probe) => Ok(AgentPresence::Stopped),
            Err(LockError::AlreadyRunning { holder, .. }) => Ok(AgentPresence::Running(holder)),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            DeviceLock::presence(dir.path()).unwrap(),
            AgentPresence::Stopped
        );
        let first = DeviceLock::acquire(dir.path()).unwrap();
        std::fs::write(
            dir.path().join(AGENT_FILE),
            r#"{"pid": 4242, "url": "http://127.0.0.1:9"}"#,
        )
        .unwrap();
        let err = DeviceLock::acquire(dir.path()).unwrap_err();
        assert_eq!(err.code(), "device_running");
        let LockError::AlreadyRunning {
            holder: Some(h), ..
        } = &err
        else {
            panic!("expected AlreadyRunning with a holder, got {err:?}");
        };
        assert_eq!(
            (h.pid, h.url.as_deref()),
            (4242, Some("http://127.0.0.1:9"))
        );
        assert!(err.to_string().contains("pid 4242"), "{err}");
        assert!(err.to_string().contains("http://127.0.0.1:9"), "{err}");
        let AgentPresence::Running(Some(h)) = DeviceLock::presence(dir.path()).unwrap() else {
            panic!("the lock is held: presence must say Running with the holder");
        };
        assert_eq!(h.pid, 4242);
        drop(first);
        // A stale agent.json without a lock holder means nothing runs.
        assert_eq!(
            DeviceLock::presence(dir.path()).unwrap(),
            AgentPresence::Stopped
        );
        let _again = DeviceLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn create_with_force_refuses_a_running_device_and_keeps_its_flash() {
        use crate::device::{create, CreateOptions, DeviceError, FLASH_FILE};
        let dir = tempfile::tempdir().unwrap();
        create(dir.path(), &CreateOptions::new()).unwrap();
        let before = std::fs::read(dir.path().join(FLASH_FILE)).unwrap();
        let agent = DeviceLock::acquire(dir.path()).unwrap();
        let mut force = CreateOptions::new();
        force.force = true;
        force.rollback = true;
        let err = create(dir.path(), &force).unwrap_err();
        assert!(
            matches!(&err, DeviceError::Locked(e) if e.code() == "device_running"),
            "{err:?}"
        );
        assert!(err.to_string().contains("already running"), "{err}");
        assert_eq!(std::fs::read(dir.path().join(FLASH_FILE)).unwrap(), before);
        drop(agent);
        // Stopped, the same --force replaces it.
        create(dir.path(), &force).unwrap();
    }
}
