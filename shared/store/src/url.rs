//! Redis URLs: which deployment to talk to, and how to print one without its password.
//!
//! ```text
//! redis://[user[:password]@]host[:port][/db]                  one server
//! rediss://...                                                the same over TLS
//! redis+sentinel://[user[:password]@]host:port[,host:port…]/<master-name>[/db]
//! redis+cluster://[user[:password]@]host:port[,host:port…]    Redis Cluster (db 0 only)
//! rediss+sentinel://…, rediss+cluster://…                     the same over TLS
//! ```
//!
//! User and password are the data nodes' (percent-encoded in the URL). Sentinels are asked
//! without credentials unless `?sentinel_password=…` (and optionally `sentinel_username=…`)
//! says otherwise: Sentinel's `requirepass` is its own, separate from the masters'.

use std::fmt;

use percent_encoding::percent_decode_str;

/// The default port of a Redis server.
pub const DEFAULT_PORT: u16 = 6379;
/// The default port of a Sentinel.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// A host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl HostPort {
    /// Parses `host:port`, `[v6]:port`, or `host` with `default_port`.
    pub fn parse(text: &str, default_port: u16) -> Result<Self, UrlError> {
        let bad = |why: &str| UrlError(format!("bad host {text:?}: {why}"));
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| bad("missing ]"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(bad("unexpected text after ]")),
            }
        } else {
            match text.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host.contains(['/', '@', '?', '#', ' ']) {
            return Err(bad("not a host name"));
        }
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(bad("the port must be 1 to 65535")),
            },
        };
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

/// What kind of deployment a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server (which may be a replicated master behind a stable address).
    Single(HostPort),
    /// Ask these Sentinels for the master of `master`.
    Sentinel {
        sentinels: Vec<HostPort>,
        master: String,
    },
    /// Redis Cluster, discovered from these seed nodes.
    Cluster { seeds: Vec<HostPort> },
}

impl Topology {
    /// The scheme's deployment word, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Topology::Single(_) => "server",
            Topology::Sentinel { .. } => "sentinel",
            Topology::Cluster { .. } => "cluster",
        }
    }

    /// True for the deployments that promote replicas on their own (Sentinel, Cluster):
    /// writers wait for a replica by default there.
    pub fn is_replicated(&self) -> bool {
        !matches!(self, Topology::Single(_))
    }
}

/// A parsed Redis URL. Its `Display` and `Debug` never show a password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub tls: bool,
    pub topology: Topology,
    pub username: Option<String>,
    password: Option<String>,
    pub db: i64,
    pub sentinel_username: Option<String>,
    sentinel_password: Option<String>,
}

/// A URL that cannot be used; the message never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad redis url: {0}")]
pub struct UrlError(String);

impl RedisUrl {
    /// Parses one of the URL forms in the module docs.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let text = text.trim();
        let (scheme, rest) = text.split_once("://").ok_or_else(|| {
            UrlError(format!(
                "{} has no scheme; use redis://, rediss://, redis+sentinel://, redis+cluster:// \
                 (or their rediss+ forms)",
                mask(text)
            ))
        })?;
        let (tls, kind) = Kind::of_scheme(scheme)?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = credentials(userinfo)?;
        let hosts: Vec<HostPort> = hosts
            .split(',')
            .map(|h| HostPort::parse(h, kind.default_port()))
            .collect::<Result<_, _>>()?;
        let (topology, db) = kind.topology(hosts, path)?;
        let mut url = RedisUrl {
            tls,
            topology,
            username,
            password,
            db,
            sentinel_username: None,
            sentinel_password: None,
        };
        url.set_parameters(query)?;
        Ok(url)
    }

    /// Applies the query string's parameters (`a=1&b=2`): only Sentinel URLs take any.
    fn set_parameters(&mut self, query: Option<&str>) -> Result<(), UrlError> {
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match (k, &self.topology) {
                ("sentinel_username", Topology::Sentinel { .. }) => {
                    self.sentinel_username = non_empty(decode(v, "sentinel_username")?)
                }
                ("sentinel_password", Topology::Sentinel { .. }) => {
                    self.sentinel_password = non_empty(decode(v, "sentinel_password")?)
                }
                _ => {
                    return Err(UrlError(format!(
                        "unknown parameter {k:?} (a sentinel URL takes sentinel_username and \
                         sentinel_password; other URLs take none)"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The data nodes' password, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The Sentinels' own password, if any.
    pub fn sentinel_password(&self) -> Option<&str> {
        self.sentinel_password.as_deref()
    }

    fn scheme(&self) -> &'static str {
        match (self.tls, &self.topology) {
            (false, Topology::Single(_)) => "redis",
            (true, Topology::Single(_)) => "rediss",
            (false, Topology::Sentinel { .. }) => "redis+sentinel",
            (true, Topology::Sentinel { .. }) => "rediss+sentinel",
            (false, Topology::Cluster { .. }) => "redis+cluster",
            (true, Topology::Cluster { .. }) => "rediss+cluster",
        }
    }
}

/// `redis://127.0.0.1:6379`: a local server.
impl Default for RedisUrl {
    fn default() -> Self {
        Self {
            tls: false,
            topology: Topology::Single(HostPort {
                host: "127.0.0.1".into(),
                port: DEFAULT_PORT,
            }),
            username: None,
            password: None,
            db: 0,
            sentinel_username: None,
            sentinel_password: None,
        }
    }
}

/// The deployment a URL's scheme names, before its hosts and path are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Server,
    Sentinel,
    Cluster,
}

impl Kind {
    /// Whether the scheme asks for TLS, and which deployment it names.
    fn of_scheme(scheme: &str) -> Result<(bool, Self), UrlError> {
        Ok(match scheme.to_ascii_lowercase().as_str() {
            "redis" => (false, Self::Server),
            "rediss" => (true, Self::Server),
            "redis+sentinel" => (false, Self::Sentinel),
            "rediss+sentinel" => (true, Self::Sentinel),
            "redis+cluster" => (false, Self::Cluster),
            "rediss+cluster" => (true, Self::Cluster),
            other => {
                return Err(UrlError(format!(
                    "unknown scheme {other:?}; use redis://, rediss://, redis+sentinel://, \
                     redis+cluster:// (or their rediss+ forms)"
                )));
            }
        })
    }

    /// The port of a host named without one.
    fn default_port(self) -> u16 {
        match self {
            Self::Sentinel => DEFAULT_SENTINEL_PORT,
            Self::Server | Self::Cluster => DEFAULT_PORT,
        }
    }

    /// The deployment and database from the hosts and the path (after the first `/`), which
    /// means something different for each kind.
    fn topology(self, hosts: Vec<HostPort>, path: &str) -> Result<(Topology, i64), UrlError> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match self {
            Self::Server => {
                let [host] = <[HostPort; 1]>::try_from(hosts).map_err(|_| {
                    UrlError(
                        "redis:// names one server; use redis+sentinel:// or redis+cluster:// \
                         for several"
                            .into(),
                    )
                })?;
                let db = match segments.as_slice() {
                    [] => 0,
                    [db] => parse_db(db)?,
                    _ => return Err(UrlError(format!("unexpected path /{path}"))),
                };
                Ok((Topology::Single(host), db))
            }
            Self::Sentinel => {
                let (master, db) = match segments.as_slice() {
                    [master] => (*master, 0),
                    [master, db] => (*master, parse_db(db)?),
                    _ => {
                        return Err(UrlError(
                            "a sentinel URL ends with /<master-name> (then optionally /<db>)"
                                .into(),
                        ));
                    }
                };
                let master = decode(master, "master name")?;
                let topology = Topology::Sentinel {
                    sentinels: hosts,
                    master,
                };
                Ok((topology, db))
            }
            Self::Cluster => match segments.as_slice() {
                [] | ["0"] => Ok((Topology::Cluster { seeds: hosts }, 0)),
                _ => Err(UrlError(
                    "Redis Cluster has only database 0: drop the path".into(),
                )),
            },
        }
    }
}

/// The user and password of `user[:password]`, percent-decoded; empty ones are none.
fn credentials(userinfo: Option<&str>) -> Result<(Option<String>, Option<String>), UrlError> {
    let Some(u) = userinfo else {
        return Ok((None, None));
    };
    let (user, pass) = match u.split_once(':') {
        Some((user, pass)) => (user, Some(pass)),
        None => (u, None),
    };
    Ok((
        non_empty(decode(user, "user")?),
        pass.map(|p| decode(p, "password"))
            .transpose()?
            .and_then(non_empty),
    ))
}

fn parse_db(s: &str) -> Result<i64, UrlError> {
    s.parse::<i64>()
        .ok()
        .filter(|db| *db >= 0)
        .ok_or_else(|| UrlError(format!("database {s:?} is not a number ≥ 0")))
}

fn decode(text: &str, what: &str) -> Result<String, UrlError> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            UrlError(format!(
                "the {what} is not valid UTF-8 after percent-decoding"
            ))
        })
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Prints the URL with `****` for any password; the form round-trips through
/// [`RedisUrl::parse`] except for the masked secrets.
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme())?;
        match (&self.username, &self.password) {
            (Some(u), Some(_)) => write!(f, "{u}:****@")?,
            (None, Some(_)) => write!(f, ":****@")?,
            (Some(u), None) => write!(f, "{u}@")?,
            (None, None) => {}
        }
        let hosts = |f: &mut fmt::Formatter<'_>, hs: &[HostPort]| {
            let list: Vec<String> = hs.iter().map(|h| h.to_string()).collect();
            write!(f, "{}", list.join(","))
        };
        match &self.topology {
            Topology::Single(h) => {
                write!(f, "{h}")?;
                if self.db != 0 {
                    write!(f, "/{}", self.db)?;
                }
            }
            Topology::Sentinel { sentinels, master } => {
                hosts(f, sentinels)?;
                write!(f, "/{master}")?;
                if self.db != 0 {
                    write!(f, "/{}", self.db)?;
                }
                if self.sentinel_password.is_some() {
                    write!(f, "?sentinel_password=****")?;
                }
            }
            Topology::Cluster { seeds } => hosts(f, seeds)?,
        }
        Ok(())
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// Replaces the password of any URL-like text with `****` (`redis://user:secret@host` →
/// `redis://user:****@host`; also `password`, `pass` and `sentinel_password` query values),
/// for text that may not parse: messages about bad URLs, health URLs.
pub fn mask(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let start = scheme_end + 3;
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = url[..start].to_owned();
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":****");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let tail = &rest[authority_end..];
    match tail.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _))
                        if ["password", "pass", "sentinel_password"]
                            .iter()
                            .any(|p| k.eq_ignore_ascii_case(p)) =>
                    {
                        format!("{k}=****")
                    }
                    _ => kv.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(tail),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn single_server_forms() {
        let u = RedisUrl::parse("redis://127.0.0.1:6380/2").expect("parses");
        assert_eq!(u.topology, Topology::Single(hp("127.0.0.1", 6380)));
        assert_eq!((u.tls, u.db, u.password()), (false, 2, None));
        let u = RedisUrl::parse("rediss://app:p%40ss@redis.example").expect("parses");
        assert!(u.tls);
        assert_eq!(u.topology, Topology::Single(hp("redis.example", 6379)));
        assert_eq!(
            (u.username.as_deref(), u.password()),
            (Some("app"), Some("p@ss"))
        );
        let u = RedisUrl::parse("redis://:secret@[::1]:7000").expect("parses");
        assert_eq!(u.topology, Topology::Single(hp("::1", 7000)));
        assert_eq!(u.password(), Some("secret"));
    }

    #[test]
    fn sentinel_and_cluster_forms() {
        let u =
            RedisUrl::parse("redis+sentinel://s1:26379,s2,s3:5000/mymaster/1?sentinel_password=x")
                .expect("parses");
        assert_eq!(
            u.topology,
            Topology::Sentinel {
                sentinels: vec![hp("s1", 26379), hp("s2", 26379), hp("s3", 5000)],
                master: "mymaster".into()
            }
        );
        assert_eq!((u.db, u.sentinel_password()), (1, Some("x")));
        let u = RedisUrl::parse("rediss+cluster://u:pw@a:7000,b:7001").expect("parses");
        assert!(u.tls && u.topology.is_replicated());
        assert_eq!(
            u.topology,
            Topology::Cluster {
                seeds: vec![hp("a", 7000), hp("b", 7001)]
            }
        );
    }

    #[test]
    fn bad_urls_say_why_and_hide_the_password() {
        for (url, says) in [
            ("127.0.0.1:6379", "no scheme"),
            ("http://x", "unknown scheme"),
            ("redis://a:1,b:2", "one server"),
            ("redis+sentinel://s1", "/<master-name>"),
            ("redis+cluster://a:1/3", "only database 0"),
            ("redis://h:0", "1 to 65535"),
            ("redis://h:99999", "1 to 65535"),
            ("redis://h/x", "not a number"),
            ("redis://h?protocol=resp3", "unknown parameter"),
            ("redis://:S3cret@/0", "no host"),
        ] {
            let e = RedisUrl::parse(url).expect_err(url).to_string();
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("S3cret"), "{e}");
        }
    }

    #[test]
    fn display_and_debug_mask_every_password() {
        for url in [
            "redis://:S3cretPW@127.0.0.1:1/3",
            "rediss://user:S3cretPW@h:2",
            "redis+sentinel://user:S3cretPW@s1:1,s2:2/m?sentinel_password=S3cretPW",
            "redis+cluster://user:S3cretPW@a:1,b:2",
        ] {
            let u = RedisUrl::parse(url).expect("parses");
            let shown = format!("{u} {u:?}");
            assert!(!shown.contains("S3cretPW"), "{shown}");
            assert!(shown.contains("****"), "{shown}");
            // What is shown parses back to the same deployment.
            let back = RedisUrl::parse(&u.to_string()).expect("round-trips");
            assert_eq!(back.topology, u.topology);
        }
    }

    #[test]
    fn mask_hides_userinfo_of_any_url() {
        assert_eq!(mask("redis://:pw@h:1/0"), "redis://:****@h:1/0");
        assert_eq!(mask("http://u:pw@h/health"), "http://u:****@h/health");
        assert_eq!(
            mask("redis+sentinel://s:1/m?sentinel_password=pw"),
            "redis+sentinel://s:1/m?sentinel_password=****"
        );
        assert_eq!(mask("http://h/a@b"), "http://h/a@b");
        assert_eq!(mask("no url"), "no url");
    }
}
