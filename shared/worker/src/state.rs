//! The state file: the feed position the worker has delivered up to and the keys it owns
//! with their tokens, so a restart resumes where the last run stopped.
//!
//! Two files. The *snapshot* (the path given) holds the position, every owned key with its
//! token, and the number (`seq`) of the last journal record it includes; it is written
//! atomically (a temporary file in the same directory, synced, then renamed over the old one),
//! so a crash leaves either the old snapshot or the new one, never half of either. The
//! *journal* (the same path with `.journal` appended) gets one JSON line per delivered feed
//! line: its position and the keys it changed. So saving a line costs bytes in proportion to
//! the keys that changed, not to the whole owned set; the journal is folded into a new
//! snapshot once it outgrows the snapshot, and at every start.
//!
//! A record is handed to the operating system before the next line's callbacks run (a killed
//! process loses none), and synced to disk by [`StateFile::sync`], which the worker calls
//! whenever no more feed lines are waiting: one disk sync per burst of lines, not per line.
//! After a power loss the lines since the last sync are delivered again (at least once); none
//! is ever skipped, as a record is written only after its callbacks returned. Loading stops at
//! the first incomplete or damaged journal line (a torn append) and drops it.

use std::path::{Path, PathBuf};

use pantheon_client::{EntryId, WatchLine, WatchOp};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::WorkerError;
use crate::owned::{self, Owned};

/// Format version, for a future change of the layout.
const VERSION: u32 = 1;
/// The journal is folded into the snapshot once it is larger than the snapshot and this.
const COMPACT_MIN_BYTES: u64 = 256 * 1024;

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
    /// The last journal record folded in (absent in files written before the journal: 0).
    #[serde(default)]
    seq: u64,
}

/// One journal line: a delivered feed line.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    seq: u64,
    position: String,
    /// `snapshot` (the keys are the whole owned set), `acquire` or `release`.
    op: String,
    keys: Vec<String>,
    token: u64,
}

/// The state file of one node.
#[derive(Debug)]
pub(crate) struct StateFile {
    path: PathBuf,
    tmp: PathBuf,
    journal_path: PathBuf,
    node: String,
    journal: Option<tokio::fs::File>,
    /// The last record written (or folded into the snapshot).
    seq: u64,
    journal_bytes: u64,
    snapshot_bytes: u64,
    /// Records written since the last sync.
    unsynced: bool,
}

impl StateFile {
    pub(crate) fn new(path: &Path, node: &str) -> Self {
        let with = |suffix: &str| {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            PathBuf::from(p)
        };
        Self {
            path: path.to_owned(),
            tmp: with(".tmp"),
            journal_path: with(".journal"),
            node: node.to_owned(),
            journal: None,
            seq: 0,
            journal_bytes: 0,
            snapshot_bytes: 0,
            unsynced: false,
        }
    }

    /// The saved state (the snapshot with the journal folded in, which is then compacted);
    /// empty if neither file exists yet (a first start).
    pub(crate) async fn load(&mut self) -> Result<State, WorkerError> {
        let mut state = State::default();
        match tokio::fs::read(&self.path).await {
            Ok(bytes) => {
                let disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| self.damaged(e))?;
                if disk.version != VERSION {
                    return Err(self.damaged(format!("unknown version {}", disk.version)));
                }
                if disk.node != self.node {
                    // Resuming another node's position would skip or repeat its changes.
                    return Err(self.damaged(format!(
                        "it holds the state of node {:?}, not {:?}",
                        disk.node, self.node
                    )));
                }
                state.position = disk
                    .position
                    .map(|p| p.parse::<EntryId>())
                    .transpose()
                    .map_err(|e| self.damaged(e))?;
                state.owned = disk.owned;
                self.seq = disk.seq;
                self.snapshot_bytes = bytes.len() as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io(e)),
        }
        let journal = match tokio::fs::read(&self.journal_path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(self.io(e)),
        };
        if journal.is_empty() && self.snapshot_bytes > 0 {
            return Ok(state);
        }
        // Complete lines only: the part after the last newline is a torn append.
        let complete = journal
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(&journal[..0], |end| &journal[..end]);
        for line in complete.split(|b| *b == b'\n') {
            let Ok(record) = serde_json::from_slice::<Record>(line) else {
                break;
            };
            if record.seq <= self.seq {
                // Already in the snapshot (a compaction whose truncation was lost).
                continue;
            }
            if record.seq != self.seq + 1 {
                break;
            }
            let (Ok(position), Some(op)) = (record.position.parse::<EntryId>(), op(&record.op))
            else {
                break;
            };
            let line = WatchLine {
                id: position,
                op,
                keys: record.keys,
                token: record.token,
                peer: None,
                cause: None,
                state: false,
            };
            owned::fold(&mut state.owned, &line);
            state.position = Some(position);
            self.seq = record.seq;
        }
        // Start from a snapshot of all of it (the file exists from the first start on) and an
        // empty journal (no torn tail left).
        self.compact(&state).await?;
        Ok(state)
    }

    /// Records that `line` was delivered (`state` is the state after it). The record reaches
    /// the operating system before this returns; [`StateFile::sync`] puts it on disk.
    pub(crate) async fn record(
        &mut self,
        line: &WatchLine,
        state: &State,
    ) -> Result<(), WorkerError> {
        let record = Record {
            seq: self.seq + 1,
            position: line.id.to_string(),
            op: line.op.as_str().to_owned(),
            keys: line.keys.clone(),
            token: line.token,
        };
        let mut bytes = serde_json::to_vec(&record).map_err(|e| self.damaged(e))?;
        bytes.push(b'\n');
        let journal = match &mut self.journal {
            Some(j) => j,
            None => {
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.journal_path)
                    .await
                    .map_err(|e| self.io(e))?;
                self.journal.insert(file)
            }
        };
        let written = async {
            journal.write_all(&bytes).await?;
            journal.flush().await
        };
        written.await.map_err(|e| self.io(e))?;
        self.seq = record.seq;
        self.journal_bytes += bytes.len() as u64;
        self.unsynced = true;
        if self.journal_bytes > self.snapshot_bytes.max(COMPACT_MIN_BYTES) {
            self.compact(state).await?;
        }
        Ok(())
    }

    /// Puts every record written so far on disk (a no-op when there is none).
    pub(crate) async fn sync(&mut self) -> Result<(), WorkerError> {
        if !self.unsynced {
            return Ok(());
        }
        if let Some(journal) = &self.journal {
            journal.sync_data().await.map_err(|e| self.io(e))?;
        }
        self.unsynced = false;
        Ok(())
    }

    /// Writes `state` (which includes every record so far) as the snapshot, then empties the
    /// journal. A crash in between leaves records the snapshot already holds: skipped by seq.
    async fn compact(&mut self, state: &State) -> Result<(), WorkerError> {
        self.save(state).await?;
        let journal = match self.journal.take() {
            Some(j) => j,
            None => tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.journal_path)
                .await
                .map_err(|e| self.io(e))?,
        };
        journal.set_len(0).await.map_err(|e| self.io(e))?;
        self.journal = Some(journal);
        self.journal_bytes = 0;
        self.unsynced = false;
        Ok(())
    }

    /// Replaces the snapshot with `state` (as of record `seq`), atomically.
    async fn save(&mut self, state: &State) -> Result<(), WorkerError> {
        let disk = OnDisk {
            version: VERSION,
            node: self.node.clone(),
            position: state.position.map(|p| p.to_string()),
            owned: state.owned.clone(),
            seq: self.seq,
        };
        let bytes = serde_json::to_vec(&disk).map_err(|e| self.damaged(e))?;
        let file = tokio::fs::File::create(&self.tmp)
            .await
            .map_err(|e| self.io(e))?;
        let mut file = tokio::io::BufWriter::new(file);
        file.write_all(&bytes).await.map_err(|e| self.io(e))?;
        file.flush().await.map_err(|e| self.io(e))?;
        // On disk before the rename, so the rename never publishes an empty file after a
        // power loss.
        file.get_ref().sync_all().await.map_err(|e| self.io(e))?;
        tokio::fs::rename(&self.tmp, &self.path)
            .await
            .map_err(|e| self.io(e))?;
        // The rename on disk before the journal is emptied.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(dir) = tokio::fs::File::open(dir).await
        {
            let _ = dir.sync_all().await;
        }
        self.snapshot_bytes = bytes.len() as u64;
        Ok(())
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

fn op(s: &str) -> Option<WatchOp> {
    match s {
        "snapshot" => Some(WatchOp::Snapshot),
        "acquire" => Some(WatchOp::Acquire),
        "release" => Some(WatchOp::Release),
        "handoff" => Some(WatchOp::Handoff),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "pantheon-worker-state-{}-{name}",
            std::process::id(),
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    fn line(id: &str, op: WatchOp, keys: &[&str], token: u64) -> WatchLine {
        WatchLine {
            id: id.parse().expect("id"),
            op,
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            token,
            peer: None,
            cause: None,
            state: false,
        }
    }

    /// Delivers `line` as the worker does: fold, move the position, record.
    async fn deliver(file: &mut StateFile, state: &mut State, line: &WatchLine) {
        owned::fold(&mut state.owned, line);
        state.position = Some(line.id);
        file.record(line, state).await.expect("record");
    }

    #[tokio::test]
    async fn saves_and_loads_the_position_and_the_owned_keys() {
        let path = dir("roundtrip").join("state.json");
        let mut file = StateFile::new(&path, "n1");
        assert_eq!(file.load().await.expect("load"), State::default());
        let state = State {
            position: Some("1700000000000-3".parse().expect("id")),
            owned: [("user:1".to_owned(), 42)].into_iter().collect(),
        };
        file.save(&state).await.expect("save");
        assert_eq!(
            StateFile::new(&path, "n1").load().await.expect("load"),
            state
        );
        assert!(!file.tmp.exists(), "the temporary file was renamed");
    }

    #[tokio::test]
    async fn a_restart_folds_the_journal_and_drops_a_torn_last_line() {
        let path = dir("journal").join("state.json");
        let mut file = StateFile::new(&path, "n1");
        let mut state = file.load().await.expect("load");
        deliver(
            &mut file,
            &mut state,
            &line("5-0", WatchOp::Snapshot, &["a", "b"], 3),
        )
        .await;
        deliver(
            &mut file,
            &mut state,
            &line("6-0", WatchOp::Acquire, &["c"], 4),
        )
        .await;
        deliver(
            &mut file,
            &mut state,
            &line("7-0", WatchOp::Release, &["a"], 5),
        )
        .await;
        file.sync().await.expect("sync");
        // A crash: only the journal holds the changes; then half a line was appended.
        drop(file);
        let mut journal = std::fs::OpenOptions::new()
            .append(true)
            .open(path.with_extension("json.journal"))
            .expect("journal");
        std::io::Write::write_all(
            &mut journal,
            b"{\"seq\":4,\"position\":\"8-0\",\"op\":\"acq",
        )
        .expect("torn append");
        let mut again = StateFile::new(&path, "n1");
        let loaded = again.load().await.expect("load");
        assert_eq!(loaded, state);
        assert_eq!(loaded.position, Some("7-0".parse().expect("id")));
        // Compacted at the start: the snapshot alone holds it, the journal is empty.
        assert_eq!(
            std::fs::metadata(&again.journal_path)
                .expect("journal")
                .len(),
            0
        );
        let disk: OnDisk =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!((disk.seq, disk.owned), (3, state.owned.clone()));
        // Records go on after the compaction, numbered on.
        deliver(
            &mut again,
            &mut state,
            &line("8-0", WatchOp::Acquire, &["d"], 6),
        )
        .await;
        assert_eq!(
            StateFile::new(&path, "n1").load().await.expect("load"),
            state
        );
    }

    #[tokio::test]
    async fn records_a_snapshot_already_holds_are_skipped() {
        let path = dir("skip").join("state.json");
        let mut file = StateFile::new(&path, "n1");
        let mut state = file.load().await.expect("load");
        deliver(
            &mut file,
            &mut state,
            &line("5-0", WatchOp::Acquire, &["a"], 3),
        )
        .await;
        deliver(
            &mut file,
            &mut state,
            &line("6-0", WatchOp::Release, &["a"], 4),
        )
        .await;
        let journal = std::fs::read(&file.journal_path).expect("journal");
        // A compaction whose emptying of the journal was lost: the old records are still there.
        file.save(&state).await.expect("save");
        std::fs::write(&file.journal_path, &journal).expect("restore the journal");
        assert_eq!(
            StateFile::new(&path, "n1").load().await.expect("load"),
            state
        );
    }

    #[tokio::test]
    async fn the_journal_is_folded_in_once_it_outgrows_the_snapshot() {
        let path = dir("compact").join("state.json");
        let mut file = StateFile::new(&path, "n1");
        let mut state = file.load().await.expect("load");
        let keys: Vec<String> = (0..1000).map(|i| format!("tenant:{i:06}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        for i in 0..30 {
            let op = if i % 2 == 0 {
                WatchOp::Acquire
            } else {
                WatchOp::Release
            };
            deliver(
                &mut file,
                &mut state,
                &line(&format!("{}-0", 10 + i), op, &keys, i),
            )
            .await;
        }
        let journal = std::fs::metadata(&file.journal_path)
            .expect("journal")
            .len();
        assert!(
            journal <= COMPACT_MIN_BYTES,
            "compacted: {journal} bytes left"
        );
        assert!(file.seq == 30);
        assert_eq!(
            StateFile::new(&path, "n1").load().await.expect("load"),
            state
        );
    }

    #[tokio::test]
    async fn refuses_another_nodes_state_and_a_damaged_file() {
        let path = dir("other").join("state.json");
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

    #[tokio::test]
    async fn reads_a_state_file_written_before_the_journal() {
        let path = dir("old").join("state.json");
        std::fs::write(
            &path,
            br#"{"version":1,"node":"n1","position":"9-0","owned":{"a":2}}"#,
        )
        .expect("write");
        let state = StateFile::new(&path, "n1").load().await.expect("load");
        assert_eq!(state.position, Some("9-0".parse().expect("id")));
        assert_eq!(state.owned.get("a"), Some(&2));
    }
}
