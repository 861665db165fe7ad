//! `pantheon events [--follow] [--group G --consumer C]`: prints events. Without a group it
//! reads the stream directly (the latest `--limit`, then `XREAD BLOCK` with `--follow`);
//! with one it reads through the consumer group and acks each event once printed.

use std::time::Duration;

use pantheon_client::{Delivery, Payload, Start, SubscribeOptions};
use pantheon_domain::{EntryId, Event, EventKind};
use pantheon_store::{RawEntry, events};
use serde_json::{Map, Value, json};

use crate::cli::EventsArgs;
use crate::config::Settings;
use crate::connect::{Cluster, client_error};
use crate::output;
use crate::tail::Tail;

/// Without `--follow`, a group read ends after this long without a new event.
const IDLE_END: Duration = Duration::from_millis(1500);

/// One line of text for an event.
pub fn line(id: EntryId, event: &Event) -> String {
    let mut parts = vec![
        output::timestamp(event.at()),
        format!("{:<14}", event.kind.name()),
    ];
    match &event.kind {
        EventKind::Rebalanced { moved, flows } => {
            parts.push(format!(
                "{} keys moved: {}",
                output::count(*moved),
                output::flows(flows)
            ));
        }
        _ => {
            let fields: Vec<String> = event
                .encode()
                .into_iter()
                .filter(|(k, _)| !matches!(*k, "type" | "cause" | "at"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            parts.push(fields.join(" "));
        }
    }
    parts.push(format!("(event {id}, cause {})", event.cause));
    parts.join("  ")
}

/// One JSON object for an event: its id and its fields (as the stream holds them).
pub fn json_line(id: EntryId, fields: &[(Vec<u8>, Vec<u8>)], error: Option<&str>) -> Value {
    let mut map = Map::new();
    map.insert("id".into(), json!(id.to_string()));
    for (k, v) in fields {
        map.insert(
            String::from_utf8_lossy(k).into_owned(),
            json!(String::from_utf8_lossy(v)),
        );
    }
    if let Some(e) = error {
        map.insert("decode_error".into(), json!(e));
    }
    Value::Object(map)
}

fn print_raw(entry: &RawEntry, as_json: bool) {
    match Event::decode(&entry.fields) {
        Ok(event) if !as_json => crate::outln!("{}", line(entry.id, &event)),
        Ok(_) => crate::outln!("{}", json_line(entry.id, &entry.fields, None)),
        Err(e) if as_json => {
            crate::outln!(
                "{}",
                json_line(entry.id, &entry.fields, Some(&e.to_string()))
            )
        }
        Err(e) => crate::outln!(
            "{}  (undecodable entry {}: {e})",
            output::timestamp(entry.id.ms),
            entry.id
        ),
    }
}

fn print_delivery(d: &Delivery, as_json: bool) {
    match &d.payload {
        Payload::Event(event) if !as_json => crate::outln!("{}", line(d.id, event)),
        Payload::Event(event) => {
            let fields: Vec<(Vec<u8>, Vec<u8>)> = event
                .encode()
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.into_bytes()))
                .collect();
            let mut v = json_line(d.id, &fields, None);
            if let Some(m) = v.as_object_mut() {
                m.insert("deliveries".into(), json!(d.deliveries));
            }
            crate::outln!("{v}");
        }
        Payload::Raw { fields, error } => {
            if as_json {
                crate::outln!("{}", json_line(d.id, fields, Some(error)));
            } else {
                crate::outln!("(undecodable event {}: {error})", d.id);
            }
        }
    }
}

pub async fn run(args: EventsArgs, settings: &Settings) -> anyhow::Result<()> {
    let cluster = Cluster::connect(settings).await?;
    if let (Some(group), Some(consumer)) = (&args.group, &args.consumer) {
        return grouped(&cluster, group, consumer, &args).await;
    }
    let latest = events::latest(&mut cluster.con.clone(), &cluster.layout, args.limit).await?;
    for entry in &latest {
        print_raw(entry, args.json);
    }
    if !args.follow {
        return Ok(());
    }
    let shutdown = pantheon_service::shutdown_on_signals();
    let after = latest.last().map_or(EntryId::ZERO, |e| e.id);
    let mut tail = Tail::new(&cluster.con, &cluster.layout, Some(after)).await?;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            next = tail.next(Duration::from_secs(1)) => {
                if let Some(entry) = next? {
                    print_raw(&entry, args.json);
                }
            }
        }
    }
}

async fn grouped(
    cluster: &Cluster,
    group: &str,
    consumer: &str,
    args: &EventsArgs,
) -> anyhow::Result<()> {
    let options = SubscribeOptions {
        start: if args.from_beginning {
            Start::FromBeginning
        } else {
            Start::FromNow
        },
        block: Duration::from_millis(500),
        ..SubscribeOptions::default()
    };
    let mut sub = cluster
        .client
        .subscribe(group, consumer, options)
        .await
        .map_err(client_error)?;
    let shutdown = pantheon_service::shutdown_on_signals();
    loop {
        let next = if args.follow {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                d = sub.next() => Some(d),
            }
        } else {
            // Cancelling `next` loses nothing: an entry read but not returned stays pending.
            tokio::time::timeout(IDLE_END, sub.next()).await.ok()
        };
        let Some(delivery) = next else {
            return Ok(());
        };
        let delivery = delivery.map_err(client_error)?;
        print_delivery(&delivery, args.json);
        sub.ack(delivery.id).await.map_err(client_error)?;
    }
}
