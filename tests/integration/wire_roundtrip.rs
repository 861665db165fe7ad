//! The log's wire format survives a real Redis: every command type goes through XADD and
//! XRANGE and decodes to the same entry, and malformed entries (as `redis-cli XADD` could
//! write them) decode to errors that say what is wrong.

use pantheon_domain::entry::ProbeResult;
use pantheon_domain::health::ProbeError;
use pantheon_domain::placement::Strategy;
use pantheon_domain::policy::PolicyChange;
use pantheon_domain::{Command, LogEntry, NodeId};
use pantheon_test_support::TestRedis;
use redis::Value;
use redis::aio::MultiplexedConnection;

type Fields = Vec<(Vec<u8>, Vec<u8>)>;
/// Field/value pairs as a producer writes them.
type Raw<'a> = Vec<(&'a [u8], &'a [u8])>;

fn node(id: &str) -> NodeId {
    NodeId::new(id).expect("valid node id")
}

fn probe(node_id: &str, ok: bool, error: Option<ProbeError>) -> ProbeResult {
    ProbeResult {
        node: node(node_id),
        epoch: 7,
        ok,
        status: if ok { Some(200) } else { Some(503) },
        latency_ms: 12,
        error,
        prober: Some("prober-a".into()),
    }
}

/// One entry of every command type, with optional fields both set and unset.
fn every_kind_of_entry() -> Vec<LogEntry> {
    let mut entries = vec![
        LogEntry::new(Command::Join {
            node: node("node-1"),
            url: "http://127.0.0.1:8080/health".into(),
            weight: None,
            handoff: false,
        }),
        LogEntry::new(Command::Join {
            node: node("worker_7.eu-west:8080@a"),
            url: "https://10.0.0.5:8443/healthz?deep=1".into(),
            weight: Some(3),
            handoff: false,
        })
        .with_cmd("client-42/1"),
        LogEntry::new(Command::Leave {
            node: node("node-1"),
        }),
        LogEntry::new(Command::Drain {
            node: node("node-2"),
        })
        .with_cmd("c-drain"),
        LogEntry::new(Command::Undrain {
            node: node("node-2"),
        }),
        LogEntry::new(Command::Weight {
            node: node("node-3"),
            weight: 100,
        }),
        // Three `key` fields in one entry: the reason replies must be read as pairs, not maps.
        LogEntry::new(Command::Assign {
            keys: vec!["user:1".into(), "user:2".into(), "tenant/α β".into()],
        }),
        LogEntry::new(Command::Assign {
            keys: vec!["only".into()],
        })
        .with_cmd("batch-9"),
        LogEntry::new(Command::Unassign {
            keys: vec!["user:2".into(), "user:1".into()],
        }),
        LogEntry::new(Command::Probe(ProbeResult {
            node: node("node-4"),
            epoch: 0,
            ok: false,
            status: None,
            latency_ms: 0,
            error: Some(ProbeError::Refused),
            prober: None,
        })),
        LogEntry::new(Command::Probe(probe("node-4", true, None))),
        LogEntry::new(Command::Policy(PolicyChange {
            fall: Some(5),
            rise: Some(1),
            strategy: Some(Strategy::Rendezvous),
            vnodes: Some(4096),
            panic: Some(30),
            damp_half_life: Some(60),
            ..PolicyChange::default()
        })),
        LogEntry::new(Command::Policy(PolicyChange {
            strategy: Some(Strategy::Ring),
            ..PolicyChange::default()
        })),
        LogEntry::new(Command::Policy(PolicyChange {
            fall: Some(2),
            ..PolicyChange::default()
        })),
    ];
    for error in [
        ProbeError::Timeout,
        ProbeError::Status,
        ProbeError::Protocol,
        ProbeError::Policy,
    ] {
        entries.push(LogEntry::new(Command::Probe(probe(
            "node-5",
            false,
            Some(error),
        ))));
    }
    entries
}

async fn xadd(con: &mut MultiplexedConnection, stream: &str, fields: &[(&[u8], &[u8])]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    cmd.query_async(con).await.expect("XADD")
}

async fn xrange(con: &mut MultiplexedConnection, stream: &str) -> Vec<(String, Fields)> {
    let reply: Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(con)
        .await
        .expect("XRANGE");
    read_entries(reply)
}

/// Parses an XRANGE reply `[[id, [f1, v1, f2, v2, ...]], ...]` keeping every field pair in
/// order, duplicates included (a `HashMap`-based `StreamId` would keep one `key` of many).
fn read_entries(reply: Value) -> Vec<(String, Fields)> {
    let Value::Array(entries) = reply else {
        panic!("XRANGE reply is not an array: {reply:?}")
    };
    entries
        .into_iter()
        .map(|entry| {
            let Value::Array(parts) = entry else {
                panic!("stream entry is not an array: {entry:?}")
            };
            let [id, fields] = <[Value; 2]>::try_from(parts).expect("entry is [id, fields]");
            let id = String::from_utf8(bulk(id)).expect("entry id is UTF-8");
            let Value::Array(flat) = fields else {
                panic!("entry fields are not an array: {fields:?}")
            };
            assert!(
                flat.len() % 2 == 0,
                "odd number of field/value items in entry {id}"
            );
            let mut pairs = Vec::with_capacity(flat.len() / 2);
            let mut items = flat.into_iter();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                pairs.push((bulk(k), bulk(v)));
            }
            (id, pairs)
        })
        .collect()
}

fn bulk(value: Value) -> Vec<u8> {
    match value {
        Value::BulkString(bytes) => bytes,
        Value::SimpleString(s) => s.into_bytes(),
        other => panic!("expected a bulk string, got {other:?}"),
    }
}

#[tokio::test]
async fn every_command_type_round_trips_through_a_redis_stream() {
    let redis = TestRedis::start().await;
    let mut con = redis.connection().await;
    let stream = format!("pantheon:{{{}}}:log", redis.namespace());
    let entries = every_kind_of_entry();

    let mut ids = Vec::new();
    for entry in &entries {
        let encoded = entry.encode();
        let raw: Vec<(&[u8], &[u8])> = encoded
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        ids.push(xadd(&mut con, &stream, &raw).await);
    }

    let read = xrange(&mut con, &stream).await;
    assert_eq!(read.len(), entries.len());
    for ((id, fields), (expected_id, entry)) in read.iter().zip(ids.iter().zip(&entries)) {
        assert_eq!(id, expected_id);
        let expected_fields: Fields = entry
            .encode()
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.into_bytes()))
            .collect();
        assert_eq!(
            fields, &expected_fields,
            "fields of {entry} changed in Redis"
        );
        let decoded = LogEntry::decode(fields)
            .unwrap_or_else(|e| panic!("entry {id} ({entry}) did not decode: {e}"));
        assert_eq!(&decoded, entry);
    }
}

#[tokio::test]
async fn a_redis_cli_style_join_with_address_port_and_path_decodes() {
    let redis = TestRedis::start().await;
    let mut con = redis.connection().await;
    let stream = format!("pantheon:{{{}}}:log", redis.namespace());
    let raw: [(&[u8], &[u8]); 5] = [
        (b"type", b"join"),
        (b"node", b"node-1"),
        (b"address", b"http://10.0.0.5"),
        (b"port", b"8080"),
        (b"path", b"health"),
    ];
    xadd(&mut con, &stream, &raw).await;

    let read = xrange(&mut con, &stream).await;
    let decoded = LogEntry::decode(&read[0].1).expect("decodes");
    assert_eq!(
        decoded,
        LogEntry::new(Command::Join {
            node: node("node-1"),
            url: "http://10.0.0.5:8080/health".into(),
            weight: None,
            handoff: false,
        })
    );
}

#[tokio::test]
async fn malformed_entries_are_decode_errors_with_a_reason() {
    let redis = TestRedis::start().await;
    let mut con = redis.connection().await;
    let stream = format!("pantheon:{{{}}}:log", redis.namespace());
    // (raw fields as a producer might XADD them, words the error message must contain)
    let cases: Vec<(Raw<'_>, &[&str])> = vec![
        (vec![(b"node", b"n1")], &["missing", "type"]),
        (
            vec![(b"type", b"explode"), (b"node", b"n1")],
            &["unknown entry type", "explode"],
        ),
        (
            vec![(b"v", b"2"), (b"type", b"leave"), (b"node", b"n1")],
            &["schema version", "2"],
        ),
        (
            vec![(b"type", b"leave"), (b"node", b"a"), (b"node", b"b")],
            &["node", "more than once"],
        ),
        (
            vec![(b"type", b"leave"), (b"node", b"a b")],
            &["node id", "' '"],
        ),
        (
            vec![(b"type", b"weight"), (b"node", b"n1"), (b"wieght", b"5")],
            &["unknown field", "wieght"],
        ),
        (
            vec![(b"type", b"weight"), (b"node", b"n1"), (b"weight", b"0")],
            &["weight", "outside"],
        ),
        (
            vec![
                (b"type", b"weight"),
                (b"node", b"n1"),
                (b"weight", b"heavy"),
            ],
            &["weight", "number"],
        ),
        (
            vec![
                (b"type", b"join"),
                (b"node", b"n1"),
                (b"url", b"ftp://x/health"),
            ],
            &["ftp", "http"],
        ),
        (
            vec![(b"type", b"join"), (b"node", b"n1")],
            &["missing", "url"],
        ),
        (vec![(b"type", b"assign"), (b"cmd", b"c1")], &["no keys"]),
        (vec![(b"type", b"assign"), (b"key", b"")], &["key is empty"]),
        (
            vec![
                (b"type", b"probe"),
                (b"node", b"n1"),
                (b"epoch", b"1"),
                (b"ok", b"maybe"),
            ],
            &["ok", "maybe"],
        ),
        (
            vec![(b"type", b"policy"), (b"strategy", b"random")],
            &["strategy", "random"],
        ),
        (vec![(b"type", b"policy")], &["at least one"]),
        (
            vec![(b"type", b"leave"), (b"node", b"n\xff")],
            &["node", "UTF-8"],
        ),
    ];

    for (raw, _) in &cases {
        xadd(&mut con, &stream, raw).await;
    }
    let read = xrange(&mut con, &stream).await;
    assert_eq!(read.len(), cases.len());
    for ((id, fields), (raw, words)) in read.iter().zip(&cases) {
        let sent: Fields = raw.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        assert_eq!(fields, &sent, "Redis changed entry {id}");
        let message = match LogEntry::decode(fields) {
            Ok(entry) => panic!("entry {id} {sent:?} decoded to {entry} but is malformed"),
            Err(e) => e.to_string(),
        };
        for word in *words {
            assert!(
                message.contains(word),
                "error for {sent:?} is {message:?}, expected {word:?} in it"
            );
        }
    }
}
