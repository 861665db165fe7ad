//! Appending to the log as a producer does: plain `XADD`s, one at a time or pipelined. The
//! raw pipelined `XADD` is also the baseline the projector's throughput is compared with.

use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::{EntryId, NodeId};
use redis::aio::MultiplexedConnection;

/// `XADD <log> * <fields of entry>`.
pub fn xadd_cmd(log: &str, entry: &LogEntry) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(log).arg("*");
    for (k, v) in entry.encode() {
        cmd.arg(k).arg(v);
    }
    cmd
}

/// Appends one entry; its id.
pub async fn xadd(con: &mut MultiplexedConnection, log: &str, entry: &LogEntry) -> EntryId {
    let id: String = xadd_cmd(log, entry).query_async(con).await.expect("XADD");
    id.parse().expect("entry id")
}

/// Appends `entries` in pipelines of `per_pipe`; the id of the last one.
pub async fn xadd_pipelined(
    con: &mut MultiplexedConnection,
    log: &str,
    entries: &[LogEntry],
    per_pipe: usize,
) -> EntryId {
    let mut last = EntryId::ZERO;
    for chunk in entries.chunks(per_pipe) {
        let mut pipe = redis::pipe();
        for e in chunk {
            pipe.add_command(xadd_cmd(log, e));
        }
        let ids: Vec<String> = pipe.query_async(con).await.expect("XADD pipeline");
        last = ids.last().and_then(|s| s.parse().ok()).expect("entry id");
    }
    last
}

/// A `join` entry for each health URL, the node named by `name(index)`.
pub fn joins(urls: &[String], name: impl Fn(usize) -> String) -> Vec<LogEntry> {
    urls.iter()
        .enumerate()
        .map(|(i, url)| {
            LogEntry::new(Command::Join {
                node: NodeId::new(&name(i)).expect("node id"),
                url: url.clone(),
                weight: None,
                handoff: false,
            })
        })
        .collect()
}

/// Pipelines of `per_pipe` `XADD`s of already encoded entries, built ahead so that only the
/// sending is timed.
pub fn xadd_pipes(
    log: &str,
    entries: &[Vec<(&str, String)>],
    per_pipe: usize,
) -> Vec<redis::Pipeline> {
    entries
        .chunks(per_pipe)
        .map(|chunk| {
            let mut pipe = redis::pipe();
            for e in chunk {
                let cmd = pipe.cmd("XADD").arg(log).arg("*");
                for (k, v) in e {
                    cmd.arg(*k).arg(v);
                }
            }
            pipe
        })
        .collect()
}

/// Sends pipelines built by [`xadd_pipes`]; the ids of every entry, in order.
pub async fn send_xadds(
    con: &mut MultiplexedConnection,
    pipes: &[redis::Pipeline],
) -> Vec<EntryId> {
    let mut ids = Vec::new();
    for pipe in pipes {
        let got: Vec<String> = pipe.query_async(con).await.expect("XADD pipeline");
        ids.extend(got.iter().map(|s| s.parse::<EntryId>().expect("entry id")));
    }
    ids
}
