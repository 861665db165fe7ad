//! The atomic, fenced commit: one Lua script applies a whole batch (read models, events,
//! rejections, checkpoint, XACK) only if the caller still holds the lease and the checkpoint
//! is where the caller thinks it is. Redis runs a script to completion without interleaving
//! any other command, so readers see the batch entirely or not at all.

use std::collections::HashMap;

use redis::Script;

use crate::StoreError;

/// Interprets a list of operations passed in ARGV:
/// `cmd, nkeys, key-index..., nargs, arg...` repeated. KEYS[1] is the lease, KEYS[2] the
/// checkpoint; every key an operation touches is declared in KEYS (Redis Cluster needs that).
const COMMIT_LUA: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED this projector does not hold the lease')
end
local last = redis.call('HGET', KEYS[2], 'last_id') or ''
if last ~= ARGV[2] then
  return redis.error_reply('STALE checkpoint is at ' .. last .. ', expected ' .. ARGV[2])
end
local i = 3
local n = #ARGV
while i <= n do
  local cmd = ARGV[i]
  local nkeys = tonumber(ARGV[i + 1])
  local call = {cmd}
  for k = 1, nkeys do
    call[#call + 1] = KEYS[tonumber(ARGV[i + 1 + k])]
  end
  local nargs = tonumber(ARGV[i + 2 + nkeys])
  local first = i + 3 + nkeys
  -- A leading '?' marks a call whose failure is expected and harmless (see Batch::tolerant).
  local invoke = redis.call
  if string.sub(cmd, 1, 1) == '?' then
    invoke = redis.pcall
    cmd = string.sub(cmd, 2)
    call[1] = cmd
  end
  -- "XGROUP SETID": a subcommand goes before the keys.
  local space = string.find(cmd, ' ', 1, true)
  if space then
    table.insert(call, 2, string.sub(cmd, space + 1))
    cmd = string.sub(cmd, 1, space - 1)
    call[1] = cmd
    nkeys = nkeys + 1
  end
  if nkeys == 1 then
    invoke(cmd, call[2], unpack(ARGV, first, first + nargs - 1))
  else
    for a = first, first + nargs - 1 do
      call[#call + 1] = ARGV[a]
    end
    invoke(unpack(call))
  end
  i = first + nargs
end
return 'OK'
"#;

/// Most arguments in one Redis call inside the script; Lua's `unpack` is limited to a few
/// thousand values, so large HSET/SADD calls are split.
const MAX_ARGS_PER_CALL: usize = 1000;

/// Why a commit did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Another projector holds the lease (or it expired): this one must stop committing.
    #[error("fenced: the lease is held by another projector or expired")]
    Fenced,
    /// The checkpoint moved under us: another leader committed; reload before going on.
    #[error("stale: {0}")]
    Stale(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CommitError {
    /// True when a half-finished slot migration refused the commit: nothing was applied, and
    /// the same commit may run again once the migration is over.
    pub fn is_migrating(&self) -> bool {
        matches!(self, CommitError::Store(e) if e.is_migrating())
    }
}

/// A batch of operations to commit atomically.
#[derive(Debug, Default)]
pub struct Batch {
    keys: Vec<String>,
    key_index: HashMap<String, usize>,
    ops: Vec<Op>,
    args: usize,
}

/// One Redis call, kept as the command Redis receives (one contiguous buffer, not an
/// allocation per argument: a batch holds hundreds of thousands of keys), plus what the
/// commit script needs to replay it.
#[derive(Debug)]
struct Op {
    /// The name as the script knows it: `"XGROUP SETID"`, or `"?XADD"` for a tolerant call.
    name: &'static str,
    /// Key slots (indices into the script's KEYS).
    keys: Vec<usize>,
    /// `name [subcommand] keys... args...`.
    cmd: redis::Cmd,
    /// Words of `cmd` before the arguments (name, subcommand, keys).
    head: usize,
}

impl Op {
    fn args(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.cmd.args_iter().skip(self.head).map(|a| match a {
            redis::Arg::Simple(bytes) => bytes,
            // Batches only ever add plain byte arguments.
            _ => &[][..],
        })
    }
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of Redis calls the script will make.
    pub fn calls(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Size of the payload, in arguments.
    pub fn args(&self) -> usize {
        self.args
    }

    fn key_slot(&mut self, key: &str) -> usize {
        if let Some(&i) = self.key_index.get(key) {
            return i;
        }
        // KEYS[1] and KEYS[2] are the lease and the checkpoint, so ours start at 3.
        let i = self.keys.len() + 3;
        self.keys.push(key.to_owned());
        self.key_index.insert(key.to_owned(), i);
        i
    }

    /// Adds one call `cmd keys... args...`.
    pub fn call<A: AsRef<[u8]>>(
        &mut self,
        name: &'static str,
        keys: &[&str],
        args: impl IntoIterator<Item = A>,
    ) {
        let slots: Vec<usize> = keys.iter().map(|k| self.key_slot(k)).collect();
        let plain = name.trim_start_matches('?');
        let (command, sub) = plain
            .split_once(' ')
            .map_or((plain, None), |(c, s)| (c, Some(s)));
        let mut cmd = redis::cmd(command);
        if let Some(sub) = sub {
            cmd.arg(sub);
        }
        for k in keys {
            cmd.arg(*k);
        }
        let head = cmd.args_iter().len();
        for a in args {
            cmd.arg(a.as_ref());
        }
        self.args += 3 + slots.len() + (cmd.args_iter().len() - head);
        self.ops.push(Op {
            name,
            keys: slots,
            cmd,
            head,
        });
    }

    /// `cmd key member...` split into calls of bounded size (SADD, SREM, HDEL, XACK-like).
    pub fn call_chunked<A: AsRef<[u8]>>(
        &mut self,
        cmd: &'static str,
        key: &str,
        prefix: &[&str],
        members: &[A],
    ) {
        for chunk in members.chunks(MAX_ARGS_PER_CALL) {
            let args = prefix
                .iter()
                .map(|p| p.as_bytes())
                .chain(chunk.iter().map(|m| m.as_ref()));
            self.call(cmd, &[key], args);
        }
    }

    /// HSET in bounded chunks of field/value pairs.
    pub fn hset<F: AsRef<[u8]>, V: AsRef<[u8]>>(&mut self, key: &str, pairs: &[(F, V)]) {
        for chunk in pairs.chunks(MAX_ARGS_PER_CALL / 2) {
            let args = chunk.iter().flat_map(|(f, v)| [f.as_ref(), v.as_ref()]);
            self.call("HSET", &[key], args);
        }
    }

    /// Adds one call whose failure is ignored by the script. Only for writes that fail when
    /// they were already done: `XADD` with an explicit id that the stream already passed
    /// (a rejection recorded before a rebuild). Redis does not roll a script back on error,
    /// so a failing ordinary call would leave a half-applied batch.
    pub fn tolerant<A: AsRef<[u8]>>(
        &mut self,
        cmd: &'static str,
        keys: &[&str],
        args: impl IntoIterator<Item = A>,
    ) {
        let tolerant: &'static str = match cmd {
            "XADD" => "?XADD",
            other => other,
        };
        self.call(tolerant, keys, args);
    }

    /// XADD with explicit id (or `*`) and flat fields.
    pub fn xadd<F: AsRef<[u8]>, V: AsRef<[u8]>>(&mut self, key: &str, id: &str, fields: &[(F, V)]) {
        let args = std::iter::once(id.as_bytes())
            .chain(fields.iter().flat_map(|(f, v)| [f.as_ref(), v.as_ref()]));
        if id == "*" {
            self.call("XADD", &[key], args);
        } else {
            self.tolerant("XADD", &[key], args);
        }
    }

    /// Adds the calls to `pipe` as they are, for a caller that runs them inside its own
    /// `MULTI`/`EXEC` with other commands (a re-seed, [`crate::reseed`]).
    pub(crate) fn add_to(self, pipe: &mut redis::Pipeline) {
        for op in self.ops {
            pipe.add_command(op.cmd).ignore();
        }
    }

    /// Runs the operations as a plain pipeline: not atomic and not fenced. Only for writing a
    /// scratch namespace nobody reads (rebuilds), which is then swapped in by a fenced commit.
    pub async fn run_unfenced<C: redis::aio::ConnectionLike + Send>(
        &self,
        con: &mut C,
    ) -> Result<(), StoreError> {
        for chunk in self.ops.chunks(256) {
            let mut pipe = redis::pipe();
            for op in chunk {
                pipe.add_command(op.cmd.clone()).ignore();
            }
            pipe.query_async::<()>(con).await?;
        }
        Ok(())
    }

    /// The batch as a `MULTI`/`EXEC` transaction fenced with `WATCH` (see [`Watched`]).
    pub fn watched(self) -> Watched {
        let mut pipe = redis::pipe();
        pipe.atomic().ignore_errors();
        let names: Vec<&'static str> = self.ops.iter().map(|op| op.name).collect();
        for op in self.ops {
            pipe.add_command(op.cmd);
        }
        Watched { pipe, names }
    }

    /// Runs the batch: applies everything if `token` holds the lease at `lease_key` and the
    /// checkpoint's `last_id` equals `expected_last` ("" when there is no checkpoint yet).
    pub async fn commit<C: redis::aio::ConnectionLike + Send>(
        &self,
        con: &mut C,
        lease_key: &str,
        checkpoint_key: &str,
        token: &str,
        expected_last: &str,
    ) -> Result<(), CommitError> {
        let script = Script::new(COMMIT_LUA);
        let mut inv = script.key(lease_key);
        inv.key(checkpoint_key);
        for k in &self.keys {
            inv.key(k);
        }
        inv.arg(token).arg(expected_last);
        for op in &self.ops {
            inv.arg(op.name).arg(op.keys.len());
            for k in &op.keys {
                inv.arg(*k);
            }
            let args = op.args();
            inv.arg(args.len());
            for a in args {
                inv.arg(a);
            }
        }
        match inv.invoke_async::<()>(con).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let text = e.to_string();
                if text.contains("FENCED") {
                    Err(CommitError::Fenced)
                } else if text.contains("STALE") {
                    Err(CommitError::Stale(text))
                } else {
                    Err(CommitError::Store(e.into()))
                }
            }
        }
    }
}

/// A batch ready to commit as `MULTI`/`EXEC`, fenced with `WATCH` on the lease's fence counter
/// and the checkpoint: the same guarantee as [`Batch::commit`] at about half the Redis time of
/// the script (Redis runs plain commands from the client buffer; the script converts every
/// argument to a Lua string and back). Built once, it can be committed again after a refusal
/// that applied nothing (a slot migration in progress).
#[derive(Debug)]
pub struct Watched {
    pipe: redis::Pipeline,
    names: Vec<&'static str>,
}

impl Watched {
    /// Commits if `lease` is held and the checkpoint's `last_id` is `expected_last`. `con`
    /// must be a connection no one else uses: WATCH state belongs to the connection.
    pub async fn commit(
        &self,
        con: &mut crate::PinnedConnection,
        lease: &crate::lease::Lease,
        checkpoint_key: &str,
        expected_last: &str,
    ) -> Result<(), CommitError> {
        crate::watch::fenced(con, lease, checkpoint_key, &[], async |con, seen| {
            if !seen.holds(lease) {
                return Err(CommitError::Fenced);
            }
            if seen.last_id() != expected_last {
                return Err(CommitError::Stale(format!(
                    "checkpoint is at {:?}, expected {expected_last:?}",
                    seen.last
                )));
            }
            self.exec(con).await
        })
        .await
    }

    /// Runs the transaction; `EXEC` answers nil when a watched key changed.
    async fn exec(&self, con: &mut crate::PinnedConnection) -> Result<(), CommitError> {
        let store = |e: redis::RedisError| CommitError::Store(e.into());
        let reply: redis::Value = self.pipe.query_async(con).await.map_err(store)?;
        let results = match reply {
            // EXEC aborted: the fence moved (a new leader) or the checkpoint did.
            redis::Value::Nil => return Err(CommitError::Fenced),
            redis::Value::Array(results) => results,
            other => {
                return Err(CommitError::Stale(format!(
                    "unexpected EXEC reply {other:?}"
                )));
            }
        };
        for (name, result) in self.names.iter().zip(&results) {
            if let redis::Value::ServerError(e) = result
                && !name.starts_with('?')
            {
                return Err(CommitError::Stale(format!(
                    "{name} failed inside the commit: {e:?}"
                )));
            }
        }
        Ok(())
    }
}
