//! `pantheon demo`: the seed's story, for real, in under a minute. Real HTTP nodes join, keys
//! are distributed, one node is stopped and turns suspect then dead while its keys move, it
//! restarts, revives and its keys come back; then the audit timeline. Narrated step by step
//! with timestamps.
//!
//! It uses its own cluster (`demo-<pid>`), runs its own projector and prober in this process
//! with fast probe cadences, and deletes every key of that cluster at the end, so it never
//! touches other data on the same Redis.

pub mod node;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pantheon_client::{EventTail, Pantheon};
use pantheon_domain::policy::Policy;
use pantheon_domain::{EntryId, Event, EventKind};
use pantheon_service::{ProcessKind, Service};

use crate::cli::DemoArgs;
use crate::commands::{audit, nodes};
use crate::config::{Settings, mask_url};
use crate::connect::{Cluster, client_error};
use crate::error::CliError;
use crate::local_redis;
use crate::output::{self, count};

use self::node::DemoNode;

/// The whole demo must end within this.
const LIMIT: Duration = Duration::from_secs(50);
/// One step (a join applied, a node declared dead, ...) may take this long.
const STEP: Duration = Duration::from_secs(15);

/// Prints each step with the time since the demo started.
struct Narrator {
    started: Instant,
}

impl Narrator {
    fn say(&self, text: &str) {
        let t = self.started.elapsed().as_secs_f64();
        crate::outln!("[{t:5.1}s] {text}");
    }

    fn detail(&self, text: &str) {
        crate::outln!("         {text}");
    }
}

/// The demo's settings: its own cluster, quick probes.
fn demo_settings(settings: &Settings) -> Settings {
    let mut s = settings.clone();
    s.cluster = format!("demo-{}", std::process::id());
    // This one cluster only, whatever `clusters` the configuration serves.
    s.clusters.clear();
    s.projector.instance = format!("{}-projector", s.cluster);
    s.projector.block = Duration::from_millis(100);
    s.projector.lease_ttl = Duration::from_secs(2);
    s.prober.id = format!("{}-prober", s.cluster);
    s.prober.interval = Duration::from_millis(300);
    s.prober.suspect_interval = Duration::from_millis(100);
    s.prober.dead_interval = Duration::from_millis(300);
    s.prober.timeout = Duration::from_millis(300);
    s.prober.registration_ttl = Duration::from_secs(1);
    s.prober.grace = Duration::from_millis(300);
    s.prober.refresh = Duration::from_millis(50);
    s
}

pub async fn run(args: DemoArgs, settings: &Settings) -> anyhow::Result<()> {
    let s = demo_settings(settings);
    // The projector and prober run as `pantheon up` runs them.
    let service = Service::new(ProcessKind::Up, &s)?;
    let local = local_redis::ensure(&s, !args.no_local_redis).await?;
    let narrator = Narrator {
        started: Instant::now(),
    };
    let outcome = async {
        let cluster = Cluster::connect_unchecked(&s).await?;
        // A leftover of an earlier demo with the same pid: start clean.
        delete_cluster(&cluster).await?;
        let shutdown = pantheon_service::shutdown_on_signals();
        let services = tokio::spawn(service.run(shutdown.clone()));
        let mut demo_nodes = Vec::new();
        let story = tokio::select! {
            r = tokio::time::timeout(LIMIT, story(&cluster, &args, &narrator, &mut demo_nodes)) => {
                r.unwrap_or_else(|_| Err(CliError::failed(format!(
                    "the demo did not finish within {}", output::duration(LIMIT)
                )).into()))
            }
            _ = shutdown.cancelled() => Err(CliError::failed("interrupted").into()),
        };
        shutdown.cancel();
        let services = match services.await {
            Ok(r) => r.map_err(anyhow::Error::msg),
            Err(e) => Err(anyhow::anyhow!("task failed: {e}")),
        };
        for n in &mut demo_nodes {
            n.stop().await;
        }
        let deleted = delete_cluster(&cluster).await;
        if story.is_ok() {
            narrator.say(&format!(
                "Cleaned up: stopped the nodes, the projector and the prober, and deleted the {} keys of cluster {:?}.",
                deleted.as_ref().map_or(0, |n| *n),
                cluster.name
            ));
        }
        // A projector or prober that failed is the root cause of a story that stalled.
        services.and(story).and(deleted.map(|_| ()))
    }
    .await;
    if let Some(redis) = local {
        redis.stop().await;
    }
    if outcome.is_ok() {
        narrator.say(&format!(
            "Done in {}. Next: `pantheon up` runs the projector and prober for real; \
             `pantheon join`, `pantheon distribute`, `pantheon nodes` and `pantheon audit` talk to it.",
            output::duration(narrator.started.elapsed())
        ));
    }
    outcome
}

/// Deletes every key of the demo's cluster (they all share its hash tag).
async fn delete_cluster(cluster: &Cluster) -> anyhow::Result<u64> {
    Ok(cluster.client.admin().delete_scratch_cluster().await?)
}

/// Reads events until one matches.
async fn wait_for(
    tail: &mut EventTail,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> anyhow::Result<Event> {
    let deadline = Instant::now() + STEP;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tail.next(left).await? {
            Some(entry) => {
                if let Ok(e) = Event::decode(&entry.fields)
                    && pred(&e)
                {
                    return Ok(e);
                }
            }
            None => {
                return Err(CliError::failed(format!(
                    "gave up waiting for {what} after {}",
                    output::duration(STEP)
                ))
                .into());
            }
        }
    }
}

fn is<'a>(kind: &'static str, node: &'a str) -> impl Fn(&Event) -> bool + use<'a> {
    move |e| e.kind.name() == kind && e.kind.node().is_some_and(|(n, _)| n.as_str() == node)
}

fn rebalance_of(cause: EntryId) -> impl Fn(&Event) -> bool {
    move |e| e.cause == cause && matches!(e.kind, EventKind::Rebalanced { .. })
}

async fn owners(cluster: &Cluster, names: &[String]) -> anyhow::Result<BTreeMap<String, u64>> {
    let counts = nodes::key_counts(cluster, names).await?;
    Ok(names.iter().cloned().zip(counts).collect())
}

fn owners_text(owners: &BTreeMap<String, u64>) -> String {
    owners
        .iter()
        .map(|(n, c)| format!("{n} {}", count(*c)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn since(from_ms: u64, to_ms: u64) -> String {
    output::duration(output::between(from_ms, to_ms))
}

async fn wait(client: &Pantheon, id: EntryId) -> anyhow::Result<()> {
    client.wait_applied(id, STEP).await.map_err(client_error)?;
    Ok(())
}

/// The story, act by act, with a pause between acts for the reader (the detection times
/// shown are measured, not paced).
async fn story(
    cluster: &Cluster,
    args: &DemoArgs,
    say: &Narrator,
    demo_nodes: &mut Vec<DemoNode>,
) -> anyhow::Result<()> {
    let pause = || tokio::time::sleep(Duration::from_millis(args.pace_ms.min(5_000)));
    introduce(cluster, say);
    let mut tail = cluster.client.tail_events(Some(EntryId::ZERO)).await?;
    let names = join_nodes(cluster, args, say, &mut tail, demo_nodes).await?;

    pause().await;
    let before = distribute_keys(cluster, args, say, &names).await?;
    let victim_index = 1;
    let name = names[victim_index].clone();
    let mut failure = Failure {
        cluster,
        say,
        tail: &mut tail,
        sample: sample_key(cluster, say, &name).await?,
        node: &mut demo_nodes[victim_index],
        name,
        names: &names,
        keys_before: before,
    };

    pause().await;
    let died = failure.stop().await?;
    pause().await;
    failure.restart(&died).await?;

    pause().await;
    show_audit(cluster, say).await
}

/// The acts of one node's failure: it stops, turns suspect, dies, its keys move; it
/// restarts, revives, its keys come back.
struct Failure<'a> {
    cluster: &'a Cluster,
    say: &'a Narrator,
    tail: &'a mut EventTail,
    node: &'a mut DemoNode,
    name: String,
    /// One of its keys, followed through the story.
    sample: Option<String>,
    names: &'a [String],
    /// Keys per node before it stopped.
    keys_before: BTreeMap<String, u64>,
}

fn introduce(cluster: &Cluster, say: &Narrator) {
    say.say(&format!(
        "Pantheon demo on {}, in a cluster of its own, {:?} (deleted at the end).",
        mask_url(&cluster.url),
        cluster.name
    ));
    say.detail(
        "This process runs the projector (it turns the log into decisions) and a prober (it probes",
    );
    say.detail(&format!(
        "every node's /health every 300 ms). One failed probe makes a node suspect, {fall} in a row dead,",
        fall = Policy::DEFAULT_FALL
    ));
    say.detail(&format!(
        "{rise} good ones in a row alive again.",
        rise = Policy::DEFAULT_RISE
    ));
}

/// Starts the HTTP nodes, joins them, and waits until each answered its first probe;
/// returns their names.
async fn join_nodes(
    cluster: &Cluster,
    args: &DemoArgs,
    say: &Narrator,
    tail: &mut EventTail,
    demo_nodes: &mut Vec<DemoNode>,
) -> anyhow::Result<Vec<String>> {
    let client = &cluster.client;
    for i in 1..=args.nodes {
        demo_nodes.push(DemoNode::start(&format!("node-{i}")).await?);
    }
    let names: Vec<String> = demo_nodes.iter().map(|n| n.name.clone()).collect();
    say.say(&format!(
        "Started {} HTTP nodes on this machine:",
        demo_nodes.len()
    ));
    for n in demo_nodes.iter() {
        say.detail(&format!("{}  {}", n.name, n.url()));
    }
    let mut last = None;
    for n in demo_nodes.iter() {
        last = Some(
            client
                .join_url(&n.name, &n.url(), None)
                .await
                .map_err(client_error)?,
        );
    }
    if let Some(id) = last {
        wait(client, id).await?;
    }
    say.say(&format!(
        "Joined {}: each join is one entry in the log; the projector applied them.",
        names.join(", ")
    ));
    // In whatever order they answer.
    let mut waiting: Vec<&String> = names.iter().collect();
    while !waiting.is_empty() {
        let ready = wait_for(tail, "the nodes to answer their first probe", |e| {
            e.kind.name() == "ready"
                && e.kind
                    .node()
                    .is_some_and(|(n, _)| waiting.iter().any(|w| w.as_str() == n.as_str()))
        })
        .await?;
        if let Some((n, _)) = ready.kind.node() {
            waiting.retain(|w| w.as_str() != n.as_str());
        }
    }
    say.detail(
        "Each was `joining` until its /health answered the prober once; only then does it own keys.",
    );
    Ok(names)
}

/// Distributes the keys; returns how many each node owns.
async fn distribute_keys(
    cluster: &Cluster,
    args: &DemoArgs,
    say: &Narrator,
    names: &[String],
) -> anyhow::Result<BTreeMap<String, u64>> {
    let client = &cluster.client;
    let keys: Vec<String> = (1..=args.keys).map(|i| format!("user:{i}")).collect();
    let ids = client
        .distribute(keys.iter().cloned())
        .await
        .map_err(client_error)?;
    if let Some(id) = ids.last() {
        wait(client, *id).await?;
    }
    let before = owners(cluster, names).await?;
    say.say(&format!(
        "Distributed {} keys (user:1 … user:{}) over the ring. Keys per node: {}.",
        count(keys.len() as u64),
        args.keys,
        owners_text(&before)
    ));
    Ok(before)
}

/// One key of `victim`, to follow through the story.
async fn sample_key(
    cluster: &Cluster,
    say: &Narrator,
    victim: &str,
) -> anyhow::Result<Option<String>> {
    let sample = cluster
        .client
        .node_keys(victim)
        .await
        .map_err(client_error)?
        .into_iter()
        .next();
    if let Some(k) = &sample {
        say.detail(&format!(
            "For example {k} belongs to {victim} (`pantheon locate {k}`)."
        ));
    }
    Ok(sample)
}

impl Failure<'_> {
    /// Whether it owned keys before it stopped: then they move off it, and back.
    fn owned_keys(&self) -> bool {
        self.keys_before.get(&self.name).copied().unwrap_or(0) > 0
    }

    /// Stops the node and follows it turning suspect, then dead, and its keys moving; returns
    /// the `died` event.
    async fn stop(&mut self) -> anyhow::Result<Event> {
        let (cluster, say, name) = (self.cluster, self.say, &self.name);
        let stopped_ms = output::now_ms();
        self.node.stop().await;
        say.say(&format!(
            "Stopped {name}: its port now refuses connections, as if the process had crashed."
        ));
        let suspect = wait_for(
            self.tail,
            &format!("{name} to turn suspect"),
            is("suspect", name),
        )
        .await?;
        say.say(&format!(
            "{name} is suspect, {} after it stopped: one probe failed. It keeps its keys for now.",
            since(stopped_ms, suspect.at())
        ));
        let died = wait_for(self.tail, &format!("{name} to die"), is("died", name)).await?;
        let fails = match died.kind {
            EventKind::Died { fails, .. } => fails,
            _ => 0,
        };
        say.say(&format!(
            "{name} died, {} after it stopped ({} after turning suspect): {fails} probes failed in a row.",
            since(stopped_ms, died.at()),
            since(suspect.at(), died.at())
        ));
        let off = format!(" off {name}, in the same atomic commit");
        self.follow_keys("the keys to move", died.cause, &off)
            .await?;
        let during = owners(cluster, self.names).await?;
        say.detail(&format!("Keys per node now: {}.", owners_text(&during)));
        self.say_sample_owner(|k, owner| format!("{k} now belongs to {owner}."))
            .await?;
        Ok(died)
    }

    /// Restarts the node and follows it reviving and its keys coming back, as they were
    /// before it stopped.
    async fn restart(&mut self, died: &Event) -> anyhow::Result<()> {
        let (cluster, say, name) = (self.cluster, self.say, &self.name);
        let restarted_ms = output::now_ms();
        self.node.restart().await?;
        say.say(&format!("Restarted {name} on the same port."));
        let revived =
            wait_for(self.tail, &format!("{name} to revive"), is("revived", name)).await?;
        let successes = match revived.kind {
            EventKind::Revived { successes, .. } => successes,
            _ => 0,
        };
        say.say(&format!(
            "{name} revived, {} after it restarted (it was dead for {}): {successes} probes succeeded in a row.",
            since(restarted_ms, revived.at()),
            since(died.at(), revived.at())
        ));
        self.follow_keys("the keys to return", revived.cause, " back")
            .await?;
        let after = owners(cluster, self.names).await?;
        say.detail(&format!("Keys per node now: {}.", owners_text(&after)));
        if after == self.keys_before {
            say.detail(
                "Exactly as before the failure: consistent hashing moves only the keys that must move.",
            );
        }
        self.say_sample_owner(|k, owner| format!("{k} belongs to {owner} again."))
            .await
    }

    /// When the node owned keys: waits for the rebalance `cause` led to and says how many
    /// keys moved (`how`: " back", ...) and where.
    async fn follow_keys(&mut self, what: &str, cause: EntryId, how: &str) -> anyhow::Result<()> {
        if !self.owned_keys() {
            return Ok(());
        }
        let rebalanced = wait_for(self.tail, what, rebalance_of(cause)).await?;
        if let EventKind::Rebalanced { moved, flows } = &rebalanced.kind {
            self.say.detail(&format!(
                "{} keys moved{how}: {}.",
                count(*moved),
                output::flows(flows)
            ));
        }
        Ok(())
    }

    /// Says who owns the followed key now, in `text(key, owner)`.
    async fn say_sample_owner(&self, text: impl Fn(&str, &str) -> String) -> anyhow::Result<()> {
        if let Some(k) = &self.sample {
            let now = self
                .cluster
                .client
                .key_node(k)
                .await
                .map_err(client_error)?;
            let owner = now.map_or_else(|| "nobody".to_owned(), |n| n.to_string());
            self.say.detail(&text(k, &owner));
        }
        Ok(())
    }
}

/// The audit timeline, from the events and the log.
async fn show_audit(cluster: &Cluster, say: &Narrator) -> anyhow::Result<()> {
    let items = audit::timeline(cluster, &pantheon_client::audit::AuditFilter::default()).await?;
    say.say(&format!(
        "The audit timeline, from the events and the log (`pantheon audit --cluster {}`; times UTC):",
        cluster.name
    ));
    for line in audit::render(&items).lines() {
        say.detail(line);
    }
    Ok(())
}
