//! The snapshot step of `up_memory` (see its module doc): the prober's timing while the
//! projector of the same `up` process writes big snapshots (issue 19).

use super::*;

/// Nodes of the snapshot step, on the `SHARED_LISTENERS` listeners.
const SNAPSHOT_NODES: usize = 100;
/// Keys per `assign` entry, and entries per pipeline (as `scale.rs` distributes them).
const KEYS_PER_ENTRY: usize = 10_000;
const ENTRIES_PER_PIPE: usize = 10;
/// The prober's steady interval (the default `prober.interval_ms`).
const INTERVAL: Duration = Duration::from_secs(1);
/// Probe gaps counted as late: past the interval's jitter (±10%) by 100 ms, and past the
/// prober's own lag limit (`prober.lag_limit_ms`, 500 ms).
const LATE: Duration = Duration::from_millis(1_200);
const VERY_LATE: Duration = Duration::from_millis(1_500);
/// The longest the step waits for the keys to be applied, and then for the last snapshot.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(900);

/// When each node's health endpoint was asked, by node (`/health/<n>`).
struct Arrivals(Vec<Mutex<Vec<Instant>>>);

async fn record(State(arrivals): State<Arc<Arrivals>>, uri: Uri) -> &'static str {
    let now = Instant::now();
    let node = uri
        .path()
        .rsplit('/')
        .next()
        .and_then(|n| n.parse::<usize>().ok());
    if let Some(times) = node.and_then(|n| arrivals.0.get(n)) {
        times.lock().unwrap().push(now);
    }
    "ok"
}

/// `count` listeners serving `app` on a runtime and a thread of their own: the arrival times
/// are then not delayed by this process's other work (building and writing the keys).
fn serve_on_own_thread(count: usize, app: Router) -> Vec<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("health".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let _ = tx.send(serve(count, app).await);
                std::future::pending::<()>().await;
            });
        })
        .unwrap();
    rx.recv_timeout(Duration::from_secs(10))
        .expect("health listeners")
}

/// Lines of `up`'s stderr about snapshots and the prober, with the time this process read
/// each.
type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

/// Copies `up`'s stderr to `path` line by line, keeping the lines about snapshots and the
/// prober; the thread ends when `up` closes its stderr.
fn follow_stderr(
    stderr: std::process::ChildStderr,
    path: &Path,
) -> (Lines, std::thread::JoinHandle<()>) {
    let lines: Lines = Arc::default();
    let kept = lines.clone();
    let mut file =
        std::fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let thread = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let now = Instant::now();
            let _ = writeln!(file, "{line}");
            if line.contains("snapshot") || line.contains("prober") {
                kept.lock().unwrap().push((now, line));
            }
        }
    });
    (lines, thread)
}

/// One `wrote a snapshot` line of the projector (`shared/projector/src/retention.rs`).
#[derive(Debug, Clone)]
struct SnapshotWrite {
    /// When this process read the line, logged once the manifest was committed.
    done: Instant,
    last_id: Option<EntryId>,
    bytes: u64,
    chunks: u64,
    /// Serializing the state and writing its chunks, before the commit of the manifest.
    chunks_ms: u64,
}

impl SnapshotWrite {
    /// From `chunks_ms` before the line to the line: serializing, the chunks and the commit
    /// (less the few milliseconds of the commit at the start).
    fn window(&self) -> (Instant, Instant) {
        let start = self
            .done
            .checked_sub(Duration::from_millis(self.chunks_ms))
            .unwrap_or(self.done);
        (start, self.done)
    }
}

/// The value of `name=value` in a log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
}

fn snapshot_writes(lines: &[(Instant, String)]) -> Vec<SnapshotWrite> {
    let num = |l: &str, name| field(l, name).and_then(|v| v.parse().ok()).unwrap_or(0);
    lines
        .iter()
        .filter(|(_, l)| l.contains("wrote a snapshot"))
        .map(|(at, l)| SnapshotWrite {
            done: *at,
            last_id: field(l, "last_id").and_then(|v| v.parse().ok()),
            bytes: num(l, "bytes"),
            chunks: num(l, "chunks"),
            chunks_ms: num(l, "chunks_ms"),
        })
        .collect()
}

/// Gaps between consecutive probes of the same node.
#[derive(Debug, Clone, Copy, Default)]
struct Gaps {
    count: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    late: usize,
    very_late: usize,
}

/// The gaps between `from` and `to`; with `windows`, only those overlapping one of them.
fn gaps(
    arrivals: &[Vec<Instant>],
    from: Instant,
    to: Instant,
    windows: Option<&[(Instant, Instant)]>,
) -> Gaps {
    let mut all: Vec<Duration> = Vec::new();
    for times in arrivals {
        for pair in times.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let overlaps = |(start, end): &(Instant, Instant)| a < *end && b > *start;
            if a < from || b > to || windows.is_some_and(|w| !w.iter().any(overlaps)) {
                continue;
            }
            all.push(b - a);
        }
    }
    all.sort();
    let at = |q: f64| {
        let i = ((q * all.len() as f64).ceil() as usize).clamp(1, all.len().max(1)) - 1;
        all.get(i).copied().unwrap_or_default()
    };
    Gaps {
        count: all.len(),
        p50: at(0.50),
        p99: at(0.99),
        max: all.last().copied().unwrap_or_default(),
        late: all.iter().filter(|g| **g > LATE).count(),
        very_late: all.iter().filter(|g| **g > VERY_LATE).count(),
    }
}

/// What the log and the events say about the prober and the nodes.
#[derive(Debug, Default)]
struct LogCounts {
    /// `lag_ms` of each `prober_degraded` entry of the log.
    degraded_lag_ms: Vec<u32>,
    recovered: usize,
    /// Probe results with `ok=0` in the log.
    failed_probes: usize,
    entries: usize,
    events: usize,
    suspect: usize,
    died: usize,
    degraded_events: usize,
}

async fn count_log(con: &mut MultiplexedConnection, layout: &Layout) -> LogCounts {
    let mut c = LogCounts::default();
    let mut after = None;
    // Pages of 50 entries: an `assign` entry of 10,000 keys is about 150 KB.
    while let Some(last) = {
        let page = pantheon_store::log::range(con, layout, after, None, 50)
            .await
            .expect("read the log");
        for e in &page {
            c.entries += 1;
            match e.get("type") {
                Some("prober_degraded") => c
                    .degraded_lag_ms
                    .push(e.get("lag_ms").and_then(|v| v.parse().ok()).unwrap_or(0)),
                Some("prober_recovered") => c.recovered += 1,
                _ => {}
            }
            if e.get("ok") == Some("0") {
                c.failed_probes += 1;
            }
        }
        page.last().map(|e| e.id)
    } {
        after = Some(last);
    }
    let mut from = Bound::Open;
    while let Some(last) = {
        let page = pantheon_store::events::range(con, layout, from, 1_000)
            .await
            .expect("read the events");
        for e in &page {
            c.events += 1;
            match e.get("type") {
                Some("suspect") => c.suspect += 1,
                Some("died") => c.died += 1,
                Some("prober_degraded") => c.degraded_events += 1,
                _ => {}
            }
        }
        page.last().map(|e| e.id)
    } {
        from = Bound::Excluding(last);
    }
    c
}

#[derive(Debug)]
pub(super) struct SnapshotRun {
    log: PathBuf,
    /// From the first join to the start of the measurement (every node alive and settled).
    settled_after: Duration,
    measured: Duration,
    written_in: Duration,
    applied_in: Duration,
    writes: Vec<SnapshotWrite>,
    /// Keys assigned at each write's `last_id`.
    keys_at: Vec<Option<usize>>,
    /// Each write's end, in seconds after the first join.
    done_at: Vec<f64>,
    per_write: Vec<Gaps>,
    whole: Gaps,
    folding: Gaps,
    during: Gaps,
    counts: LogCounts,
    suspects_itself: usize,
    nodes_at_end: String,
    alive_at_end: usize,
    cpu_total: Duration,
    cpu_measured: Duration,
    memory: Memory,
}

pub(super) async fn run_snapshot(bin: &PathBuf, plan: &Plan) -> SnapshotRun {
    let sp = plan.snapshot;
    let redis = TestRedis::start().await;
    let layout = Layout::new("pantheon", CLUSTER);
    let mut con = connect_to(&redis.url).await;
    let arrivals = Arc::new(Arrivals(
        (0..SNAPSHOT_NODES).map(|_| Mutex::default()).collect(),
    ));
    let app = Router::new()
        .fallback(get(record))
        .with_state(arrivals.clone());
    let addrs = serve_on_own_thread(SHARED_LISTENERS, app);
    let urls: Vec<String> = (0..SNAPSHOT_NODES)
        .map(|n| format!("http://{}/health/{n}", addrs[n % addrs.len()]))
        .collect();
    let log = knob("PANTHEON_BENCH_UP_LOG").map_or_else(
        || std::env::temp_dir().join(format!("pantheon-up-snapshot-{}.log", std::process::id())),
        PathBuf::from,
    );
    let every = sp.every.to_string();
    let mut process = up(
        bin,
        &plan.wrapper,
        &redis.url,
        &[
            ("PANTHEON_PROJECTOR__SNAPSHOT_EVERY", every.as_str()),
            ("RUST_LOG", "info"),
        ],
        Stdio::piped(),
    );
    let (lines, follower) = follow_stderr(process.0.stderr.take().unwrap(), &log);
    eprintln!("  snapshot: `up` logs to {}", log.display());

    // 100 nodes (the default ring, 2,048 vnodes), all alive, then a few steady rounds.
    let started = Instant::now();
    join_all(&mut con, &layout, &urls, EntryId::ZERO).await;
    wait_alive(&mut con, &layout, SNAPSHOT_NODES, started, "snapshot").await;
    tokio::time::sleep(3 * INTERVAL).await;
    let pid = measured(process.pid(), bin);
    let cpu0 = cpu_time(pid);
    let from = Instant::now();
    let settled_after = from - started;

    // The keys, as `scale.rs` distributes them: `assign` entries of 10,000, 10 per pipeline.
    let mut assign_ids: Vec<EntryId> = Vec::new();
    let per_pipe = KEYS_PER_ENTRY * ENTRIES_PER_PIPE;
    for chunk_start in (0..sp.keys).step_by(per_pipe) {
        let mut pipe = redis::pipe();
        let chunk_end = (chunk_start + per_pipe).min(sp.keys);
        for start in (chunk_start..chunk_end).step_by(KEYS_PER_ENTRY) {
            let keys = (start..(start + KEYS_PER_ENTRY).min(sp.keys))
                .map(|i| format!("tenant:{i}"))
                .collect();
            pipe.add_command(pantheon_store::log::xadd(
                &layout,
                &LogEntry::new(Command::Assign { keys }),
            ));
        }
        let ids: Vec<String> = pipe.query_async(&mut con).await.expect("XADD assign");
        assign_ids.extend(ids.iter().map(|s| s.parse::<EntryId>().expect("entry id")));
    }
    let written_in = from.elapsed();
    let last_assign = assign_ids.last().copied().unwrap_or(EntryId::ZERO);
    wait_applied_within(&mut con, &layout, last_assign, "the keys", SNAPSHOT_WAIT).await;
    let applied_in = from.elapsed();
    let applied_at = Instant::now();
    eprintln!(
        "  snapshot: {} keys written in {:.1} s, applied after {:.1} s",
        sp.keys,
        written_in.as_secs_f64(),
        applied_in.as_secs_f64()
    );

    // One more snapshot, with every key: `snapshot_every` entries that change nothing.
    let filler: Vec<LogEntry> = (0..sp.every)
        .map(|_| {
            LogEntry::new(Command::Assign {
                keys: vec!["tenant:0".into()],
            })
        })
        .collect();
    let last = xadd_pipelined(&mut con, &layout.log(), &filler, 100).await;
    wait_applied_within(&mut con, &layout, last, "the filler", SNAPSHOT_WAIT).await;
    let waited = Instant::now();
    while !snapshot_writes(&lines.lock().unwrap())
        .iter()
        .any(|w| w.last_id.is_some_and(|id| id >= last_assign))
    {
        assert!(
            waited.elapsed() < SNAPSHOT_WAIT,
            "no snapshot with every key within {SNAPSHOT_WAIT:?} (see {})",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(sp.tail).await;
    let to = Instant::now();
    let cpu_total = cpu_time(pid);
    let memory = memory(pid);
    let counts = count_log(&mut con, &layout).await;
    let (alive_at_end, nodes_at_end) = states(&mut con, &layout).await;
    drop(process);
    // `up` has exited: its stderr ends.
    let stopping = Instant::now();
    while !follower.is_finished() && stopping.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let lines = std::mem::take(&mut *lines.lock().unwrap());

    let arrivals: Vec<Vec<Instant>> = arrivals
        .0
        .iter()
        .map(|m| {
            let mut v = m.lock().unwrap().clone();
            v.sort();
            v
        })
        .collect();
    let writes = snapshot_writes(&lines);
    let windows: Vec<(Instant, Instant)> = writes.iter().map(SnapshotWrite::window).collect();
    let per_write = windows
        .iter()
        .map(|w| gaps(&arrivals, from, to, Some(std::slice::from_ref(w))))
        .collect();
    let keys_at = writes
        .iter()
        .map(|w| {
            w.last_id
                .map(|id| (assign_ids.partition_point(|a| *a <= id) * KEYS_PER_ENTRY).min(sp.keys))
        })
        .collect();
    let done_at = writes
        .iter()
        .map(|w| w.done.saturating_duration_since(started).as_secs_f64())
        .collect();
    SnapshotRun {
        log,
        settled_after,
        measured: to - from,
        written_in,
        applied_in,
        keys_at,
        done_at,
        per_write,
        whole: gaps(&arrivals, from, to, None),
        folding: gaps(&arrivals, from, to, Some(&[(from, applied_at)])),
        during: gaps(&arrivals, from, to, Some(&windows)),
        writes,
        counts,
        suspects_itself: lines
            .iter()
            .filter(|(_, l)| l.contains("suspects itself"))
            .count(),
        nodes_at_end,
        alive_at_end,
        cpu_total,
        cpu_measured: cpu_total.saturating_sub(cpu0),
        memory,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn excess(d: Duration) -> String {
    format!(
        "{:+.0} ms",
        (d.as_secs_f64() - INTERVAL.as_secs_f64()) * 1000.0
    )
}

pub(super) fn report_snapshot(r: &SnapshotRun, sp: &SnapshotPlan) {
    println!();
    println!(
        "### Probe timing of `up` while it writes snapshots ({} keys, {SNAPSHOT_NODES} nodes, \
         default ring of 2,048 vnodes, snapshot_every {})",
        sp.keys, sp.every
    );
    println!();
    println!(
        "- keys: `assign` entries of {KEYS_PER_ENTRY}, {ENTRIES_PER_PIPE} per pipeline, written \
         in {:.1} s; all applied {:.1} s after the first was written ({:.0} keys/s end to end)",
        r.written_in.as_secs_f64(),
        r.applied_in.as_secs_f64(),
        sp.keys as f64 / r.applied_in.as_secs_f64()
    );
    println!(
        "- probes measured from {:.1} s after the first join (every node alive) for {:.1} s, \
         {} s past the last snapshot; `up`'s stderr (RUST_LOG=info): {}",
        r.settled_after.as_secs_f64(),
        r.measured.as_secs_f64(),
        sp.tail.as_secs(),
        r.log.display()
    );
    println!();
    println!(
        "| snapshot | done at (s after the first join) | keys | bytes | chunks | serialize + \
         chunks (`chunks_ms`) | probe gaps overlapping it | longest | > {} |",
        ms(LATE)
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let settled = r.settled_after.as_secs_f64();
    let before = r.done_at.iter().filter(|t| **t < settled).count();
    for (i, w) in r.writes.iter().enumerate() {
        if r.done_at[i] < settled {
            continue;
        }
        let g = r.per_write[i];
        println!(
            "| {} | {:.1} | {} | {:.1} MB | {} | {} ms | {} | {} | {} |",
            i + 1,
            r.done_at[i],
            r.keys_at[i].map_or_else(|| "?".into(), |k| k.to_string()),
            w.bytes as f64 / 1e6,
            w.chunks,
            w.chunks_ms,
            g.count,
            if g.count == 0 {
                "–".into()
            } else {
                ms(g.max)
            },
            g.late
        );
    }
    if before > 0 {
        println!();
        println!(
            "({before} snapshots of the nodes alone, written while they joined, before the \
             measurement, are not listed.)"
        );
    }
    println!();
    println!(
        "| consecutive probes of one node | gaps | p50 | p99 | max | max − 1 s | > {} | > {} |",
        ms(LATE),
        ms(VERY_LATE)
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, g) in [
        ("whole run", r.whole),
        ("while the keys were folded", r.folding),
        ("overlapping a snapshot write", r.during),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            g.count,
            ms(g.p50),
            ms(g.p99),
            ms(g.max),
            excess(g.max),
            g.late,
            g.very_late
        );
    }
    println!();
    let c = &r.counts;
    println!(
        "- `prober_degraded` entries in the log: {} (lag_ms {:?}); `prober_recovered`: {}; \
         failed probe results: {} (of {} log entries); prober log lines \"suspects itself\": {}",
        c.degraded_lag_ms.len(),
        c.degraded_lag_ms,
        c.recovered,
        c.failed_probes,
        c.entries,
        r.suspects_itself
    );
    println!(
        "- events: suspect {}, died {}, prober_degraded {} (of {}); nodes at the end: {} ({} \
         alive)",
        c.suspect, c.died, c.degraded_events, c.events, r.nodes_at_end, r.alive_at_end
    );
    println!(
        "- `up`: CPU {:.1} s since it started, {:.1} s over the {:.0} s measured ({:.2} cores); \
         peak RSS (VmHWM) {:.0} MiB, RSS at the end {:.0} MiB",
        r.cpu_total.as_secs_f64(),
        r.cpu_measured.as_secs_f64(),
        r.measured.as_secs_f64(),
        r.cpu_measured.as_secs_f64() / r.measured.as_secs_f64(),
        r.memory.hwm_mib,
        r.memory.rss_mib
    );
}
