//! Stream replies as raw bytes. A stream entry may repeat a field name (an `assign` entry
//! repeats `key`), so replies are read as ordered pairs, never into a map.

use pantheon_domain::EntryId;
use redis::Value;

use crate::StoreError;

/// One stream entry: its id and its field/value pairs, in order, as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    pub id: EntryId,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RawEntry {
    /// The value of the first field with this name, as text.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

fn bad(what: &str, v: &Value) -> StoreError {
    StoreError::Reply(format!("{what}: {v:?}"))
}

fn bytes(v: Value) -> Result<Vec<u8>, StoreError> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        other => Err(bad("expected a string", &other)),
    }
}

/// Parses an XRANGE reply (or the entries part of an XREAD reply).
pub fn parse_entries(v: Value) -> Result<Vec<RawEntry>, StoreError> {
    let items = match v {
        Value::Array(items) => items,
        Value::Nil => return Ok(Vec::new()),
        other => return Err(bad("expected an entry list", &other)),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(mut parts) = item else {
            return Err(bad("expected [id, fields]", &item));
        };
        if parts.len() != 2 {
            return Err(StoreError::Reply(format!(
                "entry with {} parts",
                parts.len()
            )));
        }
        let fields_v = parts.pop().unwrap_or(Value::Nil);
        let id_raw = bytes(parts.pop().unwrap_or(Value::Nil))?;
        let id = std::str::from_utf8(&id_raw)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| StoreError::Reply(format!("bad entry id {id_raw:?}")))?;
        let flat = match fields_v {
            Value::Array(f) => f,
            // XAUTOCLAIM/XREADGROUP return nil fields for entries deleted meanwhile.
            Value::Nil => Vec::new(),
            Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            other => return Err(bad("expected fields", &other)),
        };
        let mut fields = Vec::with_capacity(flat.len() / 2);
        let mut it = flat.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            fields.push((bytes(k)?, bytes(v)?));
        }
        out.push(RawEntry { id, fields });
    }
    Ok(out)
}

/// Parses an XREAD/XREADGROUP reply for one stream.
pub fn parse_read(v: Value) -> Result<Vec<RawEntry>, StoreError> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => {
            let mut out = Vec::new();
            for s in streams {
                let Value::Array(mut kv) = s else {
                    return Err(bad("expected [stream, entries]", &s));
                };
                if kv.len() == 2 {
                    out.extend(parse_entries(kv.pop().unwrap_or(Value::Nil))?);
                }
            }
            Ok(out)
        }
        Value::Map(streams) => {
            let mut out = Vec::new();
            for (_, entries) in streams {
                out.extend(parse_entries(entries)?);
            }
            Ok(out)
        }
        other => Err(bad("expected a stream list", &other)),
    }
}

/// The id as Redis wants it in commands.
pub fn id_arg(id: EntryId) -> String {
    id.to_string()
}
