//! Pantheon's one configuration: defaults ← `pantheon.toml` ← `PANTHEON_*` environment ←
//! flags, merged with figment, then checked key by key and by the libraries' own
//! `validate()`. The `pantheon` CLI (including `pantheon up`) and the stand-alone
//! `pantheon-projector` and `pantheon-prober` binaries all load it with [`load`], so a key
//! means the same thing, and a typo fails the same way, everywhere.
//!
//! Durations are whole milliseconds in keys ending in `_ms` (environment variables carry
//! numbers easily, and there is no unit to get wrong). Every key is documented in
//! `docs/configuration.md`; keep the two in step.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use pantheon_prober::ProberConfig;
use pantheon_projector::ProjectorConfig;
use pantheon_store::setting::{InvalidSetting, opt_text, text};
use pantheon_store::{Deployment, DeploymentError, Durability, TlsFiles};
use serde::{Deserialize, Deserializer, Serialize};

/// A configuration that cannot be used: always a usage/configuration error (the binaries exit
/// 64 with it). The message is one line naming the key as its source spells it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub message: String,
}

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// The file read when neither `--config` nor `PANTHEON_CONFIG` names one (in the current
/// directory; it may be absent).
pub const DEFAULT_FILE: &str = "pantheon.toml";
/// Names the configuration file, like `--config`.
pub const CONFIG_ENV: &str = "PANTHEON_CONFIG";
/// Prefix of the environment variables that set keys; `__` separates a section from its key.
pub const ENV_PREFIX: &str = "PANTHEON_";

/// The whole configuration, as written in `pantheon.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The Redis holding the cluster.
    #[serde(deserialize_with = "text")]
    pub redis_url: String,
    /// The cluster name (keys are `<prefix>:{<cluster>}:...`).
    #[serde(deserialize_with = "text")]
    pub cluster: String,
    /// Clusters `pantheon up` (and the service binaries) serve together, sharing the leading
    /// with the other processes given the same list (docs/adr/0010). Empty: just `cluster`.
    /// `clusters = ["a", "b"]`, or `"a,b"` (also `PANTHEON_CLUSTERS=a,b`, `up --clusters`).
    #[serde(deserialize_with = "names")]
    pub clusters: Vec<String>,
    #[serde(deserialize_with = "text")]
    pub prefix: String,
    /// TLS files for `rediss://` URLs.
    pub tls: TlsFiles,
    /// How many replicas must hold a write before it is reported.
    pub durability: DurabilitySettings,
    pub client: ClientSettings,
    pub local_redis: LocalRedisSettings,
    /// `[projector]`: declared, defaulted and checked by the projector library.
    pub projector: ProjectorConfig,
    /// `[prober]`: declared, defaulted and checked by the prober library.
    pub prober: ProberConfig,
    /// The HTTP endpoint (health, readiness, metrics, dashboard); off unless `listen` is set.
    pub http: HttpSettings,
    pub log: LogSettings,
}

/// `[http] listen = "127.0.0.1:9464"` turns on the HTTP endpoint of `pantheon up` and the
/// service binaries (also `--listen ADDR`, `PANTHEON_HTTP__LISTEN`). It is read-only; bind it
/// to loopback unless something in front of it controls who may read it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    #[serde(deserialize_with = "opt_text", skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

/// `[log] format = "text" | "json"` (also `--log-format`, `PANTHEON_LOG__FORMAT`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    #[serde(deserialize_with = "text")]
    pub format: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: "text".into(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `WAIT` after each log write: `replicas` (default 1 with a Sentinel or Cluster URL, 0 with
/// a single server) must confirm within `timeout_ms`, or the write is reported as not
/// replicated (exit code 4), never as applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DurabilitySettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    pub timeout_ms: u64,
}

impl Default for DurabilitySettings {
    fn default() -> Self {
        Self {
            replicas: None,
            timeout_ms: ms(pantheon_store::deployment::DEFAULT_WAIT_TIMEOUT),
        }
    }
}

/// How the CLI talks to a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientSettings {
    /// How long write commands wait for the projector to apply them.
    pub wait_timeout_ms: u64,
    /// How long the first connection to Redis may take before the command gives up.
    pub connect_timeout_ms: u64,
}

/// The Redis `pantheon up` and `pantheon demo` start when none answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalRedisSettings {
    pub start: bool,
    /// Working directory of the started `redis-server` (its AOF lives here).
    #[serde(deserialize_with = "text")]
    pub dir: String,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".into(),
            cluster: "default".into(),
            clusters: Vec::new(),
            prefix: ProjectorConfig::default().prefix,
            tls: TlsFiles::default(),
            durability: DurabilitySettings::default(),
            client: ClientSettings::default(),
            local_redis: LocalRedisSettings::default(),
            projector: ProjectorConfig::default(),
            prober: ProberConfig::default(),
            http: HttpSettings::default(),
            log: LogSettings::default(),
        }
    }
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            wait_timeout_ms: 10_000,
            connect_timeout_ms: 2_000,
        }
    }
}

impl Default for LocalRedisSettings {
    fn default() -> Self {
        Self {
            start: true,
            dir: ".pantheon/redis".into(),
        }
    }
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub redis_url: Option<String>,
    pub cluster: Option<String>,
    pub prefix: Option<String>,
    /// `--listen ADDR`.
    pub http_listen: Option<String>,
    /// `--log-format text|json`.
    pub log_format: Option<String>,
}

/// The loaded configuration and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
}

/// Where the file comes from: `--config`, else `PANTHEON_CONFIG`, else `pantheon.toml` in the
/// current directory if it exists. A file named explicitly must exist.
fn config_file(flag: Option<&Path>) -> Result<Option<PathBuf>, ConfigError> {
    let explicit = flag.map(Path::to_path_buf).or_else(|| {
        std::env::var_os(CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    match explicit {
        Some(path) if path.is_file() => Ok(Some(path)),
        Some(path) => Err(ConfigError::new(format!(
            "configuration file {} not found",
            path.display()
        ))),
        None => {
            let path = PathBuf::from(DEFAULT_FILE);
            Ok(path.is_file().then_some(path))
        }
    }
}

/// The environment provider: `PANTHEON_<KEY>` and `PANTHEON_<SECTION>__<KEY>`. Variables
/// that are not settings (`PANTHEON_CONFIG`, the test harness's `PANTHEON_TEST_*`) are left
/// out; any other unknown `PANTHEON_*` variable is an error, like an unknown key in the file.
fn env_provider() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|key| {
            let key = key.as_str();
            !key.eq_ignore_ascii_case("config") && !key.to_ascii_lowercase().starts_with("test_")
        })
        .split("__")
}

/// Loads the configuration.
pub fn load(flag: Option<&Path>, overrides: &Overrides) -> Result<Loaded, ConfigError> {
    let file = config_file(flag)?;
    let mut figment = Figment::new();
    if let Some(path) = &file {
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(env_provider());
    if let Some(v) = &overrides.redis_url {
        figment = figment.merge(Serialized::default("redis_url", v));
    }
    if let Some(v) = &overrides.cluster {
        figment = figment.merge(Serialized::default("cluster", v));
    }
    if let Some(v) = &overrides.prefix {
        figment = figment.merge(Serialized::default("prefix", v));
    }
    if let Some(v) = &overrides.http_listen {
        figment = figment.merge(Serialized::default("http.listen", v));
    }
    if let Some(v) = &overrides.log_format {
        figment = figment.merge(Serialized::default("log.format", v));
    }
    let settings: Settings = figment.extract().map_err(|e| describe(&e))?;
    let loaded = Loaded { settings, file };
    loaded.settings.check()?;
    Ok(loaded)
}

/// Loads the configuration of a stand-alone service binary (`pantheon-projector`,
/// `pantheon-prober`) exactly as the CLI does, from the arguments after the program name:
/// `--config PATH` (or `--config=PATH`) is the only flag, since every setting is a key.
pub fn load_service<I>(args: I) -> Result<Loaded, ConfigError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let flags = service_flags(args)?;
    load(flags.config.as_deref(), &flags.overrides)
}

/// The flags of a service binary.
#[derive(Debug, Default)]
struct ServiceFlags {
    config: Option<PathBuf>,
    overrides: Overrides,
}

/// `--config PATH`, `--listen ADDR`, `--log-format FMT` (each also as `--flag=value`).
fn service_flags<I>(args: I) -> Result<ServiceFlags, ConfigError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut flags = ServiceFlags::default();
    let mut rest: Vec<OsString> = Vec::new();
    let mut args = args.into_iter().map(Into::into);
    while let Some(arg) = args.next() {
        let text = arg.to_str().unwrap_or_default().to_owned();
        let (name, inline) = match text.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (text.clone(), None),
        };
        let slot = match name.as_str() {
            "--listen" => &mut flags.overrides.http_listen,
            "--log-format" => &mut flags.overrides.log_format,
            _ => {
                rest.push(arg);
                continue;
            }
        };
        let value = match inline {
            Some(v) => v,
            None => args
                .next()
                .and_then(|v| v.into_string().ok())
                .ok_or_else(|| ConfigError::new(format!("{name} needs a value")))?,
        };
        *slot = Some(value);
    }
    flags.config = config_flag(rest)?;
    Ok(flags)
}

fn config_flag<I>(args: I) -> Result<Option<PathBuf>, ConfigError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut args = args.into_iter().map(Into::into);
    let mut path = None;
    while let Some(arg) = args.next() {
        let value = if arg == "--config" {
            args.next()
                .ok_or_else(|| ConfigError::new("--config needs a file path"))?
        } else if let Some(v) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            OsString::from(v)
        } else {
            return Err(ConfigError::new(format!(
                "unexpected argument {:?}: the flags are --config PATH, --listen ADDR and \
                 --log-format text|json; every other setting is a key in that file (default ./pantheon.toml) or a PANTHEON_* variable, see \
                 docs/configuration.md",
                arg.to_string_lossy()
            )));
        };
        path = Some(PathBuf::from(value));
    }
    Ok(path)
}

/// One line per problem, each naming the key the way its source spells it.
fn describe(errors: &figment::Error) -> ConfigError {
    let lines: Vec<String> = errors
        .clone()
        .into_iter()
        .map(|e| describe_one(&e))
        .collect();
    ConfigError::new(format!("bad configuration: {}", lines.join("; ")))
}

fn describe_one(e: &figment::Error) -> String {
    use figment::error::Kind;
    let mut path = e.path.clone();
    let message = match &e.kind {
        Kind::UnknownField(name, expected) => {
            if path.last() != Some(name) {
                path.push(name.clone());
            }
            format!("unknown key (expected {})", one_of(expected))
        }
        Kind::MissingField(name) => {
            if path.last().map(String::as_str) != Some(name.as_ref()) {
                path.push(name.to_string());
            }
            "missing".to_owned()
        }
        Kind::InvalidType(actual, expected) => format!("expected {expected}, found {actual}"),
        Kind::InvalidValue(actual, expected) => format!("expected {expected}, found {actual}"),
        other => other.to_string(),
    };
    let (key, source) = match &e.metadata {
        Some(md) if md.name.contains("environment") => (env_name(&path), String::new()),
        Some(md) => (
            path.join("."),
            match &md.source {
                Some(figment::Source::File(f)) => format!(" in {}", f.display()),
                _ => String::new(),
            },
        ),
        None => (path.join("."), String::new()),
    };
    if key.is_empty() {
        format!("{message}{source}")
    } else {
        format!("{key}{source}: {message}")
    }
}

fn one_of(names: &[&str]) -> String {
    names.join(", ")
}

/// `["prober", "interval_ms"]` → `PANTHEON_PROBER__INTERVAL_MS`.
pub fn env_name(path: &[String]) -> String {
    format!("{ENV_PREFIX}{}", path.join("__").to_ascii_uppercase())
}

/// Names a key in both its spellings, for errors found after merging.
fn key(path: &str) -> String {
    let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
    format!("{path} ({})", env_name(&parts))
}

fn bad(path: &str, message: impl fmt::Display) -> ConfigError {
    ConfigError::new(format!("bad configuration: {}: {message}", key(path)))
}

fn positive(path: &str, v: u64) -> Result<Duration, ConfigError> {
    if v == 0 {
        return Err(bad(path, "must be at least 1"));
    }
    Ok(Duration::from_millis(v))
}

/// A library's own check of its section, as one line naming the key both ways.
fn invalid(section: &str, e: &InvalidSetting) -> ConfigError {
    let path = match e.key {
        // Checked by the library, but top-level keys.
        "cluster" | "prefix" => e.key.to_owned(),
        key => format!("{section}.{key}"),
    };
    let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
    ConfigError::new(format!(
        "bad configuration: [{section}] {e} ({})",
        env_name(&parts)
    ))
}

impl Settings {
    /// Checks every key that the conversions below do not already check, then runs the
    /// libraries' own validation.
    fn check(&self) -> Result<(), ConfigError> {
        if self.redis_url.trim().is_empty() {
            return Err(bad("redis_url", "must not be empty"));
        }
        self.deployment()?;
        pantheon_projector::config::check_name("cluster", &self.cluster)
            .map_err(|e| bad("cluster", e))?;
        pantheon_projector::config::check_name("prefix", &self.prefix)
            .map_err(|e| bad("prefix", e))?;
        positive("client.wait_timeout_ms", self.client.wait_timeout_ms)?;
        positive("client.connect_timeout_ms", self.client.connect_timeout_ms)?;
        if self.local_redis.dir.trim().is_empty() {
            return Err(bad("local_redis.dir", "must not be empty"));
        }
        self.projector_config()?;
        self.prober_config()?;
        self.http_listen()?;
        self.log_format()?;
        Ok(())
    }

    /// The address of the HTTP endpoint, if it is on.
    pub fn http_listen(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        self.http
            .listen
            .as_deref()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.trim().parse().map_err(|_| {
                    bad(
                        "http.listen",
                        format!("{l:?} is not an address like \"127.0.0.1:9464\""),
                    )
                })
            })
            .transpose()
    }

    pub fn log_format(&self) -> Result<LogFormat, ConfigError> {
        match self.log.format.trim() {
            "text" | "" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(bad("log.format", format!("{other:?} is not text or json"))),
        }
    }

    pub fn wait_timeout(&self) -> Duration {
        Duration::from_millis(self.client.wait_timeout_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.client.connect_timeout_ms)
    }

    /// The Redis deployment: URL, TLS files and durability, checked.
    pub fn deployment(&self) -> Result<Deployment, ConfigError> {
        let deployment = Deployment::new(&self.redis_url, &self.tls).map_err(|e| match e {
            DeploymentError::Url(e) => bad("redis_url", e),
            DeploymentError::Tls(e) => ConfigError::new(format!("bad configuration: {e}")),
        })?;
        let default = deployment.durability;
        if self.durability.timeout_ms == 0
            && self.durability.replicas.unwrap_or(default.replicas) > 0
        {
            return Err(bad(
                "durability.timeout_ms",
                "must be > 0 when replicas > 0",
            ));
        }
        Ok(deployment.with_durability(Durability {
            replicas: self.durability.replicas.unwrap_or(default.replicas),
            timeout: Duration::from_millis(self.durability.timeout_ms),
        }))
    }

    /// The clusters named outright in `clusters` (else `cluster` alone); each name checked.
    /// Entries with `*` are patterns: see [`Settings::cluster_patterns`].
    pub fn served_clusters(&self) -> Result<Vec<String>, ConfigError> {
        let mut names: Vec<String> = if self.clusters.is_empty() {
            vec![self.cluster.clone()]
        } else {
            self.clusters
                .iter()
                .filter(|c| !c.contains('*'))
                .cloned()
                .collect()
        };
        names.sort();
        names.dedup();
        for name in &names {
            pantheon_projector::config::check_name("cluster", name)
                .map_err(|e| ConfigError::new(format!("bad configuration: clusters: {e}")))?;
        }
        Ok(names)
    }

    /// These settings for one cluster of the served ones (`clusters` cleared).
    pub fn for_cluster(&self, cluster: &str) -> Settings {
        let mut one = self.clone();
        one.cluster = cluster.to_owned();
        one.clusters.clear();
        one
    }

    /// The patterns in `clusters` (`*`, `billing-*`): every existing cluster whose name
    /// matches is served too. Checked like names, with `*` allowed.
    pub fn cluster_patterns(&self) -> Result<Vec<String>, ConfigError> {
        let patterns: Vec<String> = self
            .clusters
            .iter()
            .filter(|c| c.contains('*'))
            .cloned()
            .collect();
        for p in &patterns {
            pantheon_projector::config::check_name("cluster pattern", &p.replace('*', "x"))
                .map_err(|e| ConfigError::new(format!("bad configuration: clusters: {e}")))?;
        }
        Ok(patterns)
    }

    pub fn layout(&self) -> pantheon_store::Layout {
        pantheon_store::Layout::new(&self.prefix, &self.cluster)
    }

    /// The projector's settings, validated.
    pub fn projector_config(&self) -> Result<ProjectorConfig, ConfigError> {
        let mut c = self.projector.clone();
        c.redis = self.deployment()?;
        c.prefix.clone_from(&self.prefix);
        c.cluster.clone_from(&self.cluster);
        c.validate().map_err(|e| invalid("projector", &e))?;
        Ok(c)
    }

    /// The prober's settings, validated.
    pub fn prober_config(&self) -> Result<ProberConfig, ConfigError> {
        let mut c = self.prober.clone();
        c.redis = self.deployment()?;
        c.prefix.clone_from(&self.prefix);
        c.cluster.clone_from(&self.cluster);
        c.validate().map_err(|e| invalid("prober", &e))?;
        Ok(c)
    }

    /// The same settings with secrets (the password in the Redis URL) replaced by `****`.
    pub fn masked(&self) -> Self {
        let mut s = self.clone();
        s.redis_url = mask_url(&s.redis_url);
        s
    }

    /// As `pantheon.toml` would say it.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print as TOML: {e}\n"))
    }
}

/// Replaces the password of a URL with `****` (see [`pantheon_store::url::mask`]).
pub fn mask_url(url: &str) -> String {
    pantheon_store::url::mask(url)
}

/// A list of names: a sequence, or one string separated by commas or spaces.
fn names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Names::deserialize(d)? {
        Names::One(s) => s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Names::Many(v) => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_url("redis://user:s3cret@host:6379/0"),
            "redis://user:****@host:6379/0"
        );
        assert_eq!(mask_url("rediss://:s3cret@host"), "rediss://:****@host");
        assert_eq!(mask_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            mask_url("redis+unix:///run/redis.sock?db=1&pass=s3cret"),
            "redis+unix:///run/redis.sock?db=1&pass=****"
        );
        assert_eq!(mask_url("redis://user@host"), "redis://user@host");
    }

    #[test]
    fn defaults_are_valid_and_match_the_libraries() {
        let s = Settings::default();
        s.check().unwrap();
        let p = s.prober_config().unwrap();
        assert_eq!(p.success_statuses, vec![(200, 299)]);
        assert_eq!(p.deny, ProberConfig::new(Deployment::default(), "x").deny);
        let c = s.projector_config().unwrap();
        assert_eq!(c.lease_ttl, Duration::from_secs(5));
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let s = Settings::default();
        let back: Settings = Figment::new()
            .merge(Toml::string(&s.to_toml()))
            .extract()
            .unwrap();
        assert_eq!(back.to_toml(), s.to_toml());
    }

    #[test]
    fn clusters_are_a_list_or_a_comma_separated_string_and_patterns_stand_apart() {
        let from_list: Settings = Figment::new()
            .merge(Toml::string("clusters = [\"b\", \"a\", \"svc-*\"]\n"))
            .extract()
            .unwrap();
        let from_string: Settings = Figment::new()
            .merge(Toml::string("clusters = \"b,a svc-*\"\n"))
            .extract()
            .unwrap();
        for s in [&from_list, &from_string] {
            assert_eq!(s.served_clusters().unwrap(), ["a", "b"]);
            assert_eq!(s.cluster_patterns().unwrap(), ["svc-*"]);
        }
        assert_eq!(Settings::default().served_clusters().unwrap(), ["default"]);
        let bad: Settings = Figment::new()
            .merge(Toml::string("clusters = [\"a{b\"]\n"))
            .extract()
            .unwrap();
        assert!(bad.served_clusters().is_err());
    }

    fn from_toml(text: &str) -> Settings {
        Figment::new().merge(Toml::string(text)).extract().unwrap()
    }

    #[test]
    fn the_clock_skew_bound_is_a_setting_and_zero_turns_it_off() {
        let s = Settings::default();
        assert_eq!(
            s.projector_config().unwrap().clock_skew_bound,
            Some(Duration::from_secs(60))
        );
        let s = from_toml("[projector]\nclock_skew_bound_ms = 5000\n");
        assert_eq!(
            s.projector_config().unwrap().clock_skew_bound,
            Some(Duration::from_secs(5))
        );
        let s = from_toml("[projector]\nclock_skew_bound_ms = 0\n");
        assert_eq!(s.projector_config().unwrap().clock_skew_bound, None);
        assert!(
            s.to_toml().contains("clock_skew_bound_ms = 0"),
            "{}",
            s.to_toml()
        );
    }

    #[test]
    fn unknown_and_bad_keys_are_named() {
        let e = Figment::new()
            .merge(Toml::string("[prober]\nintervl_ms = 5\n"))
            .extract::<Settings>()
            .unwrap_err();
        let msg = describe(&e).to_string();
        assert!(msg.contains("prober.intervl_ms"), "{msg}");
        let e = Figment::new()
            .merge(Toml::string("[prober]\ninterval_ms = \"fast\"\n"))
            .extract::<Settings>()
            .unwrap_err();
        let msg = describe(&e).to_string();
        assert!(msg.contains("prober.interval_ms"), "{msg}");
    }

    #[test]
    fn service_binaries_take_listen_and_log_format() {
        let f = service_flags([
            "--listen",
            "127.0.0.1:0",
            "--log-format=json",
            "--config",
            "a.toml",
        ])
        .unwrap();
        assert_eq!(f.overrides.http_listen.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(f.overrides.log_format.as_deref(), Some("json"));
        assert_eq!(f.config, Some(PathBuf::from("a.toml")));
        assert!(
            service_flags(["--listen"])
                .unwrap_err()
                .message
                .contains("--listen")
        );
        let mut s = Settings::default();
        assert_eq!(s.http_listen().unwrap(), None);
        s.http.listen = Some("nowhere".into());
        assert!(
            s.http_listen()
                .unwrap_err()
                .message
                .contains("PANTHEON_HTTP__LISTEN")
        );
        s.log.format = "xml".into();
        assert!(s.log_format().unwrap_err().message.contains("log.format"));
    }

    #[test]
    fn service_binaries_take_only_a_config_flag() {
        assert_eq!(config_flag(Vec::<OsString>::new()).unwrap(), None);
        assert_eq!(
            config_flag(["--config", "a.toml"]).unwrap(),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            config_flag(["--config=b.toml"]).unwrap(),
            Some(PathBuf::from("b.toml"))
        );
        assert!(
            config_flag(["--config"])
                .unwrap_err()
                .message
                .contains("path")
        );
        let e = config_flag(["--lease-ttl-ms", "5"]).unwrap_err();
        assert!(e.message.contains("--lease-ttl-ms"), "{e}");
    }

    #[test]
    fn the_prober_config_names_the_keys_users_write() {
        let s = from_toml("[prober]\nid = \"replica-1\"\ninterval_ms = 250\n");
        let c = s.prober_config().unwrap();
        assert_eq!(c.id, "replica-1");
        assert_eq!(c.interval, Duration::from_millis(250));

        let e = from_toml("[prober]\ninterval_ms = 0\n")
            .prober_config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("PANTHEON_PROBER__INTERVAL_MS"), "{e}");
        let e = from_toml("[prober]\ninterval_ms = 5\n")
            .prober_config()
            .unwrap_err()
            .to_string();
        assert!(e.contains("[prober] interval_ms 5ms is too short"), "{e}");
        let e = Figment::new()
            .merge(Toml::string("[prober]\nsuccess_statuses = [\"2xx\"]\n"))
            .extract::<Settings>()
            .unwrap_err();
        let e = describe(&e).to_string();
        assert!(
            e.contains("prober.success_statuses") && e.contains("\"2xx\""),
            "{e}"
        );
    }

    #[test]
    fn the_projector_config_follows_the_settings() {
        let s = from_toml(
            "cluster = \"c1\"\n[projector]\ninstance = \"p-1\"\nlease_ttl_ms = 1200\n\
             prober_watchdog_ms = 0\n",
        );
        let c = s.projector_config().unwrap();
        assert_eq!((c.cluster.as_str(), c.instance.as_str()), ("c1", "p-1"));
        assert_eq!(c.lease_ttl, Duration::from_millis(1200));
        assert_eq!(c.prober_watchdog, None);

        let mut s = s;
        s.projector.block = Duration::from_millis(1200);
        let e = s.projector_config().unwrap_err().to_string();
        assert!(
            e.contains("block_ms must be shorter than lease_ttl_ms"),
            "{e}"
        );
        assert!(e.contains("PANTHEON_PROJECTOR__BLOCK_MS"), "{e}");
    }
}
