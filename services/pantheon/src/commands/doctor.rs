//! `pantheon doctor`: checks what an operator would look at first and exits 1 when any check
//! fails: a projector leads and keeps up, a prober watches the nodes, the log's clock
//! follows Redis's (docs/adr/0009-a-clock-that-cannot-be-poisoned.md), no half-finished
//! slot migration holds the cluster's writes back, and Redis did not lose the cluster's data
//! with nobody holding it (docs/adr/0012-redis-that-comes-back-empty.md).

use std::time::Duration;

use serde_json::json;

use crate::cli::ReadArgs;
use crate::config::Settings;
use crate::connect::Cluster;
use crate::error::CliError;

/// More lag than this is reported (the projector applies thousands of entries a second).
const LAG_LIMIT_SECONDS: f64 = 5.0;

/// One check and, when it failed, why.
struct Check {
    name: &'static str,
    problem: Option<String>,
    detail: String,
}

pub async fn run(args: ReadArgs, settings: &Settings) -> anyhow::Result<()> {
    let (cluster, status) = Cluster::projector_health(settings).await?;
    let p = &status.projector;
    let ahead = Duration::from_millis(p.log_ahead_ms);
    let too_far = settings
        .projector
        .clock_skew_bound
        .filter(|bound| ahead > *bound);
    let admin = cluster.client.admin();
    let slot = admin.slot();
    // A user that may not ask CLUSTER NODES cannot see a migration: say so, without failing.
    let migration = admin.slot_migration().await;
    // Written by a projector that found the log and checkpoint gone, knew the cluster had
    // applied entries, and held no state to put back.
    let lost = admin.lost().await?;
    let checks = [
        Check {
            name: "data",
            detail: "no loss recorded".into(),
            problem: lost.map(|why| {
                format!(
                    "{why}: nodes and keys are gone; start the projector that led the cluster                      if it still runs (it puts its state back), or run `pantheon destroy                      --yes-i-am-sure` to start the cluster empty"
                )
            }),
        },
        Check {
            name: "projector",
            problem: (!p.lease_held).then(|| {
                "no projector leads: nothing applies the log (is `pantheon up` running?)".into()
            }),
            detail: format!("leader {}", p.leader.as_deref().unwrap_or("(none)")),
        },
        Check {
            name: "lag",
            problem: (p.lag_seconds > LAG_LIMIT_SECONDS).then(|| {
                format!(
                    "the projector is {} entries ({:.1} s of log time) behind",
                    p.lag_entries, p.lag_seconds
                )
            }),
            detail: format!("{} entries behind", p.lag_entries),
        },
        Check {
            name: "probers",
            problem: status
                .probers
                .is_empty()
                .then(|| "no prober replica is alive: node health is not being watched".into()),
            detail: format!("{} alive", status.probers.len()),
        },
        Check {
            name: "clock",
            problem: too_far.map(|bound| {
                format!(
                    "the log's newest id {} runs {} ahead of Redis's clock (bound {}): every \
                     new id is stuck there; run `pantheon recover-clock`",
                    p.log_last.as_deref().unwrap_or("?"),
                    crate::output::duration(ahead),
                    crate::output::duration(bound),
                )
            }),
            detail: format!("newest id {} ms ahead of Redis's clock", p.log_ahead_ms),
        },
        Check {
            name: "slot",
            problem: migration.as_ref().ok().and_then(Option::as_ref).map(|m| {
                format!(
                    "{m}: transactions and scripts wait, so nothing is applied, until the \
                     migration completes or is rolled back (CLUSTER SETSLOT {slot} NODE ...)"
                )
            }),
            detail: match &migration {
                Ok(_) => format!("slot {slot} is not migrating"),
                Err(e) => format!("slot {slot}: could not ask for migrations ({e})"),
            },
        },
    ];
    let failed = checks.iter().filter(|c| c.problem.is_some()).count();
    if args.json {
        crate::output::json(&json!({
            "cluster": cluster.name,
            "ok": failed == 0,
            "checks": checks.iter().map(|c| json!({
                "check": c.name,
                "ok": c.problem.is_none(),
                "problem": c.problem,
                "detail": c.detail,
            })).collect::<Vec<_>>(),
        }))?;
    } else {
        for c in &checks {
            match &c.problem {
                None => crate::outln!("ok    {:<9} {}", c.name, c.detail),
                Some(problem) => crate::outln!("FAIL  {:<9} {problem}", c.name),
            }
        }
    }
    if failed > 0 {
        return Err(CliError::failed(format!(
            "{failed} of {} checks failed for cluster {:?}",
            checks.len(),
            cluster.name
        ))
        .into());
    }
    Ok(())
}
