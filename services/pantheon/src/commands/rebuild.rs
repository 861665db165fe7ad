//! `pantheon rebuild --verify`: folds the log from scratch (from the latest snapshot) in
//! memory and compares it with the live read models, page by page (nothing is written; the
//! memory used is the folded state's). Exits 1 on a mismatch.

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::cli::RebuildArgs;
use crate::config::Settings;
use crate::connect::{Cluster, client_error};
use crate::error::CliError;
use crate::output::count;

pub async fn run(args: RebuildArgs, settings: &Settings) -> anyhow::Result<()> {
    if !args.verify {
        return Err(crate::usage(
            "`pantheon rebuild` only verifies (add --verify); rebuilding the live read models \
             is the projector's job (it rebuilds from the log when they are missing)",
        ));
    }
    let cluster = Cluster::connect(settings).await?;
    let len = cluster
        .client
        .admin()
        .log_len()
        .await
        .map_err(client_error)?;
    let bar = ProgressBar::new(len);
    // Folding is the long part; the comparison that follows reads the read models page by page.
    if let Ok(style) = ProgressStyle::with_template(
        "folding the log [{bar:40}] {human_pos}/{human_len} entries ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let progress = bar.clone();
    let started = std::time::Instant::now();
    // The fold is the projector's code, which the client library does not link: it runs
    // here, on the client's connection.
    let mut con = cluster.client.redis().clone();
    let v = pantheon_projector::verify::verify(&mut con, &cluster.layout, move |n| {
        progress.set_position(n);
    })
    .await?;
    bar.finish_and_clear();
    let hex = |c: u64| format!("{c:016x}");
    if args.json {
        crate::output::json(&json!({
            "matches": v.matches(),
            "last_id": v.last_id.map(|id| id.to_string()),
            "entries": v.entries,
            "live_checksum": v.live_checksum.map(hex),
            "folded_checksum": hex(v.folded_checksum),
            "compared": v.compared,
            "differences": v.differences,
            "examples": v.examples,
            "moved_on": v.moved_on,
        }))?;
    } else {
        crate::outln!(
            "folded {} log entries up to {} in {}",
            count(v.entries),
            v.last_id
                .map_or_else(|| "(none)".to_owned(), |id| id.to_string()),
            crate::output::duration(started.elapsed())
        );
        crate::outln!(
            "checksum: live {}, folded {}; {} read-model elements compared, {} differ",
            v.live_checksum.map_or_else(|| "(none)".to_owned(), hex),
            hex(v.folded_checksum),
            count(v.compared),
            count(v.differences)
        );
        for example in &v.examples {
            crate::outln!("  {example}");
        }
        if v.matches() {
            crate::outln!("OK: the read models equal a fold of the log");
        }
    }
    if v.matches() {
        return Ok(());
    }
    let why = if v.live_checksum.is_none() {
        "mismatch: the cluster has no checkpoint (has a projector ever run for it?)"
    } else if v.moved_on && v.differences > 0 {
        "inconclusive: the projector kept committing while the read models were compared; run \
         it again (differences can be its progress)"
    } else {
        "mismatch: the live read models differ from a fold of the log"
    };
    Err(CliError::failed(why).into())
}
