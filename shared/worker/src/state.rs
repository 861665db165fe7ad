//! The state file: the feed position the worker has delivered up to and the keys it owns
//! with their tokens, so a restart resumes where the last run stopped. Written atomically
//! (a temporary file in the same directory, flushed, then renamed over the old one), so a
//! crash leaves either the old state or the new one, never half of either.

use std::path::{Path, PathBuf};

use pantheon_client::EntryId;
use serde::{Deserialize, Serialize};

use crate::WorkerError;
use crate::owned::Owned;

/// Format version, for a future change of the layout.
const VERSION: u32 = 1;

/// What a restart needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct State {
    /// The last feed line whose callbacks all returned (`None`: start with a snapshot).
    pub(crate) position: Option<EntryId>,
    pub(crate) owned: Owned,
}

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    node: String,
    position: Option<String>,
    owned: Owned,
}

/// The state file of one node.
#[derive(Debug, Clone)]
pub(crate) struct StateFile {
    path: PathBuf,
    tmp: PathBuf,
    node: String,
}

impl StateFile {
    pub(crate) fn new(path: &Path, node: &str) -> Self {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        Self {
            path: path.to_owned(),
            tmp: PathBuf::from(tmp),
            node: node.to_owned(),
        }
    }

    /// The saved state; empty if the file does not exist yet (a first start).
    pub(crate) async fn load(&self) -> Result<State, WorkerError> {
        let bytes = match tokio::fs::read(&self.path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(self.io(e)),
        };
        let disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| self.damaged(e))?;
        if disk.version != VERSION {
            return Err(self.damaged(format!("unknown version {}", disk.version)));
        }
        if disk.node != self.node {
            // Resuming another node's position would skip or repeat that node's changes.
            return Err(self.damaged(format!(
                "it holds the state of node {:?}, not {:?}",
                disk.node, self.node
            )));
        }
        let position = disk
            .position
            .map(|p| p.parse::<EntryId>())
            .transpose()
            .map_err(|e| self.damaged(e))?;
        Ok(State {
            position,
            owned: disk.owned,
        })
    }

    /// Replaces the saved state with `state`, atomically.
    pub(crate) async fn save(&self, state: &State) -> Result<(), WorkerError> {
        let disk = OnDisk {
            version: VERSION,
            node: self.node.clone(),
            position: state.position.map(|p| p.to_string()),
            owned: state.owned.clone(),
        };
        let bytes = serde_json::to_vec(&disk).map_err(|e| self.damaged(e))?;
        let file = tokio::fs::File::create(&self.tmp)
            .await
            .map_err(|e| self.io(e))?;
        let mut file = tokio::io::BufWriter::new(file);
        tokio::io::AsyncWriteExt::write_all(&mut file, &bytes)
            .await
            .map_err(|e| self.io(e))?;
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(|e| self.io(e))?;
        // On disk before the rename, so the rename never publishes an empty file after a
        // power loss.
        file.get_ref().sync_all().await.map_err(|e| self.io(e))?;
        tokio::fs::rename(&self.tmp, &self.path)
            .await
            .map_err(|e| self.io(e))
    }

    fn io(&self, source: std::io::Error) -> WorkerError {
        WorkerError::StateIo {
            path: self.path.clone(),
            source,
        }
    }

    fn damaged(&self, reason: impl std::fmt::Display) -> WorkerError {
        WorkerError::StateDamaged {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "pantheon-worker-state-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[tokio::test]
    async fn saves_and_loads_the_position_and_the_owned_keys() {
        let path = dir().join("roundtrip.json");
        let file = StateFile::new(&path, "n1");
        assert_eq!(file.load().await.expect("load"), State::default());
        let state = State {
            position: Some("1700000000000-3".parse().expect("id")),
            owned: [("user:1".to_owned(), 42)].into_iter().collect(),
        };
        file.save(&state).await.expect("save");
        assert_eq!(file.load().await.expect("load"), state);
        assert!(!file.tmp.exists(), "the temporary file was renamed");
    }

    #[tokio::test]
    async fn refuses_another_nodes_state_and_a_damaged_file() {
        let path = dir().join("other.json");
        StateFile::new(&path, "n1")
            .save(&State::default())
            .await
            .expect("save");
        let err = StateFile::new(&path, "n2").load().await.unwrap_err();
        assert!(err.to_string().contains("not \"n2\""), "{err}");
        std::fs::write(&path, b"{not json").expect("write");
        let err = StateFile::new(&path, "n1").load().await.unwrap_err();
        assert!(matches!(err, WorkerError::StateDamaged { .. }), "{err}");
    }
}
