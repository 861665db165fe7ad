//! `pantheon acl <role> [--user NAME]`: prints the `ACL SETUSER` line that creates a
//! least-privilege Redis user for one role of the configured cluster (the rules live in
//! `pantheon_store::acl`). Each argument is single-quoted, so the line is safe to paste into
//! a shell or to pipe into `redis-cli` run by an admin. The password is generated here and
//! appears only in this line.

use pantheon_store::acl::{self, Role};

use crate::cli::AclArgs;
use crate::config::Settings;

pub fn run(args: &AclArgs, settings: &Settings) -> anyhow::Result<()> {
    let role = Role::parse(&args.role)
        .ok_or_else(|| crate::usage(format!("unknown role {:?}", args.role)))?;
    let user = args
        .user
        .clone()
        .unwrap_or_else(|| format!("pantheon-{role}"));
    if !acl::valid_user(&user) {
        return Err(crate::usage(format!(
            "user name {user:?}: use 1 to 64 letters, digits and . _ - @ :"
        )));
    }
    let deployment = settings.deployment()?;
    let line = acl::setuser_args(
        role,
        &user,
        &acl::new_password(),
        &settings.layout(),
        &deployment,
    )
    .iter()
    .map(|a| format!("'{a}'"))
    .collect::<Vec<_>>()
    .join(" ");
    crate::outln!("{line}");
    let _ = writeln_stderr(&format!(
        "# role {role}: {}; cluster {:?}; the password is in the line (>...), generated now",
        role.purpose(),
        settings.cluster
    ));
    Ok(())
}

fn writeln_stderr(line: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    writeln!(std::io::stderr().lock(), "{line}")
}
