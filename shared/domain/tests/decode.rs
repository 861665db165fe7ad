//! Every kind of malformed input decodes to a typed error with a human reason.

#![allow(clippy::unwrap_used)]

use pantheon_domain::DecodeError;
use pantheon_domain::entry::{Command, LogEntry};

fn decode(pairs: &[(&str, &str)]) -> Result<LogEntry, DecodeError> {
    let raw: Vec<(&[u8], &[u8])> = pairs
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
    LogEntry::decode(&raw)
}

fn reason(pairs: &[(&str, &str)]) -> String {
    decode(pairs).expect_err("should be rejected").to_string()
}

#[test]
fn join_in_the_go_librarys_shape_gives_one_health_url() {
    let e = decode(&[
        ("type", "join"),
        ("node", "node-1"),
        ("address", "http://localhost"),
        ("port", "8080"),
        ("path", "health"),
    ])
    .unwrap();
    assert_eq!(
        e.command,
        Command::Join {
            node: "node-1".parse().unwrap(),
            url: "http://localhost:8080/health".into(),
            weight: None,
            handoff: false,
        }
    );
    let e = decode(&[
        ("type", "join"),
        ("node", "n"),
        ("url", "https://10.0.0.5:9000/healthz"),
        ("weight", "3"),
    ])
    .unwrap();
    assert!(matches!(
        e.command,
        Command::Join {
            weight: Some(3),
            ..
        }
    ));
}

#[test]
fn repeated_key_fields_make_one_batch() {
    let e = decode(&[
        ("type", "assign"),
        ("key", "a"),
        ("key", "b"),
        ("key", "c"),
        ("cmd", "x1"),
    ])
    .unwrap();
    assert_eq!(
        e.command,
        Command::Assign {
            keys: vec!["a".into(), "b".into(), "c".into()]
        }
    );
    assert_eq!(e.cmd.as_deref(), Some("x1"));
}

#[test]
fn each_malformed_input_has_a_reason() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("node", "a")], "missing field \"type\""),
        (&[("type", "leave")], "missing field \"node\""),
        (
            &[("type", "explode"), ("node", "a")],
            "unknown entry type \"explode\"",
        ),
        (
            &[("v", "2"), ("type", "leave"), ("node", "a")],
            "unknown schema version \"2\"",
        ),
        (&[("type", "leave"), ("node", "")], "node id is empty"),
        (
            &[("type", "leave"), ("node", "a b")],
            "node id contains ' '",
        ),
        (
            &[
                ("type", "join"),
                ("node", "a"),
                ("address", "http://h"),
                ("port", "0"),
            ],
            "bad port \"0\"",
        ),
        (
            &[
                ("type", "join"),
                ("node", "a"),
                ("address", "http://h"),
                ("port", "70000"),
            ],
            "bad port \"70000\"",
        ),
        (
            &[
                ("type", "join"),
                ("node", "a"),
                ("address", "http://h"),
                ("port", "x"),
            ],
            "bad port \"x\"",
        ),
        (
            &[
                ("type", "join"),
                ("node", "a"),
                ("address", "localhost"),
                ("port", "80"),
            ],
            "address needs a scheme",
        ),
        (
            &[("type", "join"), ("node", "a"), ("url", "ftp://h/x")],
            "scheme \"ftp\" is not http or https",
        ),
        (
            &[("type", "join"), ("node", "a"), ("url", "not a url")],
            "bad health URL",
        ),
        (&[("type", "join"), ("node", "a")], "missing field \"url\""),
        (
            &[
                ("type", "join"),
                ("node", "a"),
                ("url", "http://h/"),
                ("port", "1"),
            ],
            "either \"url\" or",
        ),
        (
            &[
                ("type", "join"),
                ("node", "a"),
                ("url", "http://h/"),
                ("wieght", "2"),
            ],
            "unknown field \"wieght\" for a join entry",
        ),
        (
            &[("type", "weight"), ("node", "a"), ("weight", "0")],
            "field \"weight\" is 0, outside 1..=100",
        ),
        (
            &[("type", "weight"), ("node", "a"), ("weight", "-1")],
            "must be a number",
        ),
        (&[("type", "assign")], "batch has no keys"),
        (&[("type", "assign"), ("key", "")], "key is empty"),
        (
            &[("type", "leave"), ("node", "a"), ("node", "b")],
            "appears more than once",
        ),
        (
            &[
                ("type", "probe"),
                ("node", "a"),
                ("epoch", "1"),
                ("ok", "maybe"),
            ],
            "must be true/false or 1/0",
        ),
        (
            &[
                ("type", "probe"),
                ("node", "a"),
                ("epoch", "1"),
                ("ok", "0"),
                ("error", "gremlins"),
            ],
            "unknown probe error kind",
        ),
        (
            &[("type", "probe"), ("node", "a"), ("ok", "1")],
            "missing field \"epoch\"",
        ),
        (
            &[
                ("type", "probe"),
                ("node", "a"),
                ("epoch", "1"),
                ("ok", "1"),
                ("status", "42"),
            ],
            "outside 100..=599",
        ),
        (&[("type", "policy")], "at least one of"),
        (
            &[("type", "policy"), ("strategy", "random")],
            "unknown placement strategy",
        ),
        (
            &[("type", "policy"), ("vnodes", "100000")],
            "outside 1..=4096",
        ),
    ];
    for (pairs, expected) in cases {
        let got = reason(pairs);
        assert!(
            got.contains(expected),
            "{pairs:?}: {got:?} does not mention {expected:?}"
        );
    }
}

#[test]
fn oversized_fields_and_batches_are_refused() {
    let long_url = format!("http://h/{}", "x".repeat(3000));
    assert!(
        reason(&[("type", "join"), ("node", "a"), ("url", &long_url)])
            .contains("longer than the limit of 2048")
    );
    let long_key = "k".repeat(1025);
    assert!(
        reason(&[("type", "assign"), ("key", &long_key)]).contains("longer than the limit of 1024")
    );
    let long_node = "n".repeat(129);
    assert!(
        reason(&[("type", "leave"), ("node", &long_node)]).contains("longer than the limit of 128")
    );
    let mut batch = vec![("type", "assign")];
    batch.extend(std::iter::repeat_n(("key", "k"), 10_001));
    assert!(reason(&batch).contains("10001 keys, more than the limit of 10000"));
    let too_many = vec![("key", "k"); 20_000];
    assert!(reason(&too_many).contains("more than the limit"));
}

#[test]
fn invalid_utf8_names_the_field() {
    let raw: Vec<(&[u8], &[u8])> = vec![(b"type", b"leave"), (b"node", b"\xff\xfe")];
    assert_eq!(
        LogEntry::decode(&raw).unwrap_err().to_string(),
        "field \"node\" is not valid UTF-8"
    );
    let raw: Vec<(&[u8], &[u8])> = vec![(b"type", b"leave"), (b"\xc3\x28", b"a")];
    assert!(
        LogEntry::decode(&raw)
            .unwrap_err()
            .to_string()
            .contains("not valid UTF-8")
    );
}

#[test]
fn health_urls_with_credentials_are_refused_without_echoing_the_password() {
    for url in [
        "http://admin:S3cretPW@10.0.0.5:8080/health",
        "https://S3cretPW@10.0.0.5/health",
    ] {
        let why = reason(&[("type", "join"), ("node", "n1"), ("url", url)]);
        assert!(why.contains("credentials"), "{why}");
        assert!(!why.contains("S3cretPW"), "{why}");
    }
    let why = reason(&[
        ("type", "join"),
        ("node", "n1"),
        ("address", "http://u:S3cretPW@10.0.0.5"),
        ("port", "80"),
    ]);
    assert!(
        why.contains("credentials") && !why.contains("S3cretPW"),
        "{why}"
    );
}
