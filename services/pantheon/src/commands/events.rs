//! `pantheon events [--follow] [--group G --consumer C]`: prints events. Without a group it
//! reads the stream directly (the latest `--limit`, then `XREAD BLOCK` with `--follow`);
//! with one it reads through the consumer group and acks each event only once delivered:
//! written, flushed and, on a pipe, read by the reader (see [`crate::stdout`]). A closed
//! stdout stops the command; undelivered events stay pending for redelivery.

use std::time::Duration;

use pantheon_client::{Delivery, Payload, RawEntry, Start, SubscribeOptions};
use pantheon_domain::{EntryId, Event, EventKind};
use serde_json::{Map, Value, json};

use crate::cli::EventsArgs;
use crate::config::Settings;
use crate::connect::{Cluster, client_error};
use crate::output;
use crate::stdout::Stdout;

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

/// The text of an events-stream entry read directly (no group).
fn raw_text(entry: &RawEntry, as_json: bool) -> String {
    match Event::decode(&entry.fields) {
        Ok(event) if !as_json => line(entry.id, &event),
        Ok(_) => json_line(entry.id, &entry.fields, None).to_string(),
        Err(e) if as_json => json_line(entry.id, &entry.fields, Some(&e.to_string())).to_string(),
        Err(e) => format!(
            "{}  (undecodable entry {}: {e})",
            output::timestamp(entry.id.ms),
            entry.id
        ),
    }
}

/// The text of an entry delivered through a consumer group.
fn delivery_text(d: &Delivery, as_json: bool) -> String {
    match &d.payload {
        Payload::Event(event) if !as_json => line(d.id, event),
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
            v.to_string()
        }
        Payload::Raw { fields, error } => {
            if as_json {
                json_line(d.id, fields, Some(error)).to_string()
            } else {
                format!("(undecodable event {}: {error})", d.id)
            }
        }
    }
}

/// One line on stderr (ignoring a closed stderr: the CLI never panics on output).
fn note(message: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "pantheon: {message}");
}

pub async fn run(args: EventsArgs, settings: &Settings) -> anyhow::Result<()> {
    let cluster = Cluster::connect(settings).await?;
    let mut out = Stdout::new();
    if let (Some(group), Some(consumer)) = (&args.group, &args.consumer) {
        return grouped(&cluster, group, consumer, &args, &mut out).await;
    }
    let latest = cluster
        .client
        .latest_events(args.limit)
        .await
        .map_err(client_error)?;
    for entry in &latest {
        if out.deliver(&raw_text(entry, args.json)).await.is_err() {
            return Ok(());
        }
    }
    if !args.follow {
        return Ok(());
    }
    let shutdown = pantheon_service::shutdown_on_signals();
    let after = latest.last().map_or(EntryId::ZERO, |e| e.id);
    let mut tail = cluster
        .client
        .tail_events(Some(after))
        .await
        .map_err(client_error)?;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            // Nobody reads any more (`| head`): stop instead of following forever.
            () = out.closed() => return Ok(()),
            next = tail.next(Duration::from_secs(1)) => {
                if let Some(entry) = next?
                    && out.deliver(&raw_text(&entry, args.json)).await.is_err()
                {
                    return Ok(());
                }
            }
        }
    }
}

/// Reads through the consumer group, acking each event only after it was delivered to
/// stdout (see [`Stdout::deliver`]). When stdout closes it stops: the event in hand and
/// everything read but not yet delivered stay pending, and come back to this consumer on
/// its next start (or to another consumer of the group after `min_idle`).
async fn grouped(
    cluster: &Cluster,
    group: &str,
    consumer: &str,
    args: &EventsArgs,
    out: &mut Stdout,
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
    let stopped = |delivered: u64| {
        note(&format!(
            "stdout closed after {delivered} event(s); stopping. Events not delivered stay \
             pending for consumer {consumer:?} of group {group:?} and are delivered again"
        ));
        Ok(())
    };
    let mut delivered = 0u64;
    loop {
        let next = if args.follow {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                () = out.closed() => return stopped(delivered),
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
        let text = delivery_text(&delivery, args.json);
        let outcome = tokio::select! {
            // Interrupted before the reader took the line: not delivered, not acked.
            _ = shutdown.cancelled() => return Ok(()),
            r = out.deliver(&text) => r,
        };
        if outcome.is_err() {
            return stopped(delivered);
        }
        delivered += 1;
        // A failed ack (Redis gone) leaves a delivered event pending: it comes again
        // (at least once; consumers de-duplicate by event id or `cause`).
        sub.ack(delivery.id).await.map_err(client_error)?;
    }
}
