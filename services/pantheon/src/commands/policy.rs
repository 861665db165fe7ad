//! `pantheon policy`: the cluster's policy as the projector last committed it, every field
//! next to its default. `pantheon policy set FIELD=VALUE ...` changes it with one `policy`
//! log entry, decoded first by the projector's own rules (`PolicyChange::decode`), so an
//! unknown field or a value out of range is a usage error and nothing is written.

use pantheon_domain::entry::POLICY_FIELDS;
use pantheon_domain::policy::PolicyChange;
use pantheon_domain::{Command, EventKind, LogEntry, Policy};
use serde_json::{Map, Value, json};

use super::write;
use crate::cli::{PolicyArgs, PolicyCommand, PolicySetArgs};
use crate::config::Settings;
use crate::connect::{Cluster, client_error};
use crate::output;

pub async fn run(args: PolicyArgs, settings: &Settings) -> anyhow::Result<()> {
    match args.command {
        None => show(args.json, settings).await,
        Some(PolicyCommand::Set(set)) => change(set, settings).await,
    }
}

/// Every field of `policy` with its wire name and value, in the wire order: the domain's
/// own encoding of a change that sets them all (a struct literal, so a new field of
/// `PolicyChange` does not compile until it is listed here).
fn fields(policy: &Policy) -> Vec<(&'static str, String)> {
    let every = PolicyChange {
        fall: Some(policy.fall),
        rise: Some(policy.rise),
        strategy: Some(policy.strategy),
        vnodes: Some(policy.vnodes),
        panic: Some(policy.panic),
        damp_penalty: Some(policy.damp_penalty),
        damp_suppress: Some(policy.damp_suppress),
        damp_reuse: Some(policy.damp_reuse),
        damp_half_life: Some(policy.damp_half_life),
        damp_max_suppress: Some(policy.damp_max_suppress),
        handoff_timeout: Some(policy.handoff_timeout),
        load_epsilon: Some(policy.load_epsilon),
    };
    LogEntry::new(Command::Policy(every))
        .encode()
        .into_iter()
        .filter(|(name, _)| POLICY_FIELDS.contains(name))
        .collect()
}

/// A field's value as JSON: a number, or text (`strategy`).
fn value_json(value: &str) -> Value {
    value
        .parse::<u64>()
        .map_or_else(|_| json!(value), Value::from)
}

fn object(fields: &[(&'static str, String)]) -> Value {
    fields
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value_json(value)))
        .collect::<Map<_, _>>()
        .into()
}

/// `(field, from, to)` for every field whose value differs between the two policies.
fn differences(from: &Policy, to: &Policy) -> Vec<(&'static str, String, String)> {
    fields(from)
        .into_iter()
        .zip(fields(to))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((name, a), (_, b))| (name, a, b))
        .collect()
}

async fn show(as_json: bool, settings: &Settings) -> anyhow::Result<()> {
    let cluster = Cluster::connect(settings).await?;
    let policy = cluster.client.policy().await.map_err(client_error)?;
    let current = fields(&policy);
    let defaults = fields(&Policy::default());
    let non_default: Vec<&str> = differences(&Policy::default(), &policy)
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    if as_json {
        return output::json(&json!({
            "cluster": cluster.name,
            "policy": object(&current),
            "defaults": object(&defaults),
            "non_default": non_default,
        }));
    }
    let rows: Vec<Vec<String>> = current
        .iter()
        .zip(&defaults)
        .map(|((name, value), (_, default))| {
            let mark = if value == default { "" } else { "  *" };
            vec![
                (*name).to_owned(),
                format!("{value}{mark}"),
                default.clone(),
            ]
        })
        .collect();
    crate::outln!("{}", output::table(&["FIELD", "VALUE", "DEFAULT"], &rows));
    if non_default.is_empty() {
        crate::outln!("every field has its default");
    } else {
        crate::outln!("* differs from the default: {}", non_default.join(", "));
    }
    Ok(())
}

async fn change(args: PolicySetArgs, settings: &Settings) -> anyhow::Result<()> {
    let spelled = args
        .changes
        .iter()
        .map(|(field, value)| format!("{field}={value}"))
        .collect::<Vec<_>>()
        .join(" ");
    // Checked before connecting: a bad change is a usage error whatever Redis says.
    let change = PolicyChange::decode(&args.changes).map_err(|e| {
        crate::usage(format!(
            "policy set {spelled}: {e}; nothing was written (the fields: `pantheon policy \
             set --help`)"
        ))
    })?;
    let cluster = Cluster::connect(settings).await?;
    // The policy before, to say what changed (the event carries only the new one). Read just
    // before the append, so a change someone else appends in between shows here too. A
    // producer that may only append cannot read it; the write does not need it.
    let before = match cluster.client.policy().await {
        Ok(p) => Some(p),
        Err(e) if e.is_permission_denied() => None,
        Err(e) => return Err(client_error(e)),
    };
    let id = cluster
        .client
        .set_policy(&change)
        .await
        .map_err(|e| write::append_error(&[], e))?;
    let what = format!("policy set {spelled}");
    let Some(events) = write::settle_one(&cluster, &what, id, &args.wait, settings).await? else {
        return Ok(());
    };
    let after = events.iter().find_map(|e| match &e.kind {
        EventKind::PolicyChanged { policy } => Some(*policy),
        _ => None,
    });
    let changed = match (before, after) {
        (Some(before), Some(after)) => differences(&before, &after),
        _ => Vec::new(),
    };
    let message = match after {
        None => format!("policy unchanged: it already had {spelled}"),
        Some(after) if changed.is_empty() => {
            // No earlier policy to compare with: the fields set, with their new values.
            let now = fields(&after)
                .into_iter()
                .filter(|(name, _)| args.changes.iter().any(|(f, _)| f == name))
                .map(|(name, value)| format!("{name} → {value}"))
                .collect::<Vec<_>>();
            format!("policy changed: {}", now.join(", "))
        }
        Some(_) => format!(
            "policy changed: {}",
            changed
                .iter()
                .map(|(name, from, to)| format!("{name} {from} → {to}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let changed_json: Vec<Value> = changed
        .iter()
        .map(|(name, from, to)| json!({ "field": name, "from": value_json(from), "to": value_json(to) }))
        .collect();
    write::report(
        &args.wait,
        id,
        &message,
        &events,
        json!({
            "changed": changed_json,
            "policy": after.or_else(|| before.map(|b| change.applied_to(b))).map(|p| object(&fields(&p))),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_listed_once_in_wire_order() {
        let names: Vec<&str> = fields(&Policy::default())
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, POLICY_FIELDS);
    }

    #[test]
    fn differences_name_the_fields_that_changed() {
        let before = Policy::default();
        let after = PolicyChange::decode(&[("load_epsilon", "10"), ("panic", "40")])
            .unwrap()
            .applied_to(before);
        assert_eq!(
            differences(&before, &after),
            [
                ("panic", "50".to_owned(), "40".to_owned()),
                ("load_epsilon", "0".to_owned(), "10".to_owned())
            ]
        );
        assert_eq!(object(&fields(&after))["strategy"], "ring");
        assert_eq!(object(&fields(&after))["load_epsilon"], 10);
    }
}
