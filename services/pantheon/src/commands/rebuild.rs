//! `pantheon rebuild --verify`: folds the log from scratch (from the latest snapshot) into a
//! scratch copy of the read models and compares checksums with the live state. Read only;
//! exits 1 on a mismatch.

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::cli::RebuildArgs;
use crate::config::Settings;
use crate::connect::Cluster;
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
    let mut con = cluster.con.clone();
    let len = pantheon_store::log::len(&mut con, &cluster.layout).await?;
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "folding the log [{bar:40}] {human_pos}/{human_len} entries ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let progress = bar.clone();
    let started = std::time::Instant::now();
    let v = pantheon_projector::rebuild::verify(&mut con, &cluster.layout, move |n| {
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
            "scratch_checksum": hex(v.scratch_checksum),
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
            "live checksum {}, folded {}, reloaded from scratch {}",
            v.live_checksum.map_or_else(|| "(none)".to_owned(), hex),
            hex(v.folded_checksum),
            hex(v.scratch_checksum)
        );
        if v.matches() {
            crate::outln!("OK: the read models equal a fold of the log");
        }
    }
    if v.matches() {
        Ok(())
    } else {
        Err(CliError::failed(match v.live_checksum {
            None => "mismatch: the cluster has no checkpoint (has a projector ever run for it?)"
                .to_owned(),
            Some(_) => "mismatch: the live read models differ from a fold of the log".to_owned(),
        })
        .into())
    }
}
