//! Helpers shared by the entry and event codecs: UTF-8 checked field access and numbers.

use crate::entry::DecodeError;
use crate::limits::{MAX_FIELD_BYTES, MAX_FIELDS};

/// Field/value pairs of one stream entry, checked for UTF-8 and count.
pub(crate) struct Fields<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

/// Shortens untrusted text for error messages.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl<'a> Fields<'a> {
    pub(crate) fn new<K, V>(raw: &'a [(K, V)]) -> Result<Self, DecodeError>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        if raw.len() > MAX_FIELDS {
            return Err(DecodeError::TooManyFields {
                count: raw.len(),
                max: MAX_FIELDS,
            });
        }
        let mut pairs = Vec::with_capacity(raw.len());
        for (k, v) in raw {
            let k = std::str::from_utf8(k.as_ref()).map_err(|_| DecodeError::InvalidUtf8 {
                field: String::from_utf8_lossy(k.as_ref())
                    .chars()
                    .take(64)
                    .collect(),
            })?;
            let v = std::str::from_utf8(v.as_ref())
                .map_err(|_| DecodeError::InvalidUtf8 { field: clip(k) })?;
            pairs.push((k, v));
        }
        Ok(Self { pairs })
    }

    pub(crate) fn pairs(&self) -> &[(&'a str, &'a str)] {
        &self.pairs
    }

    /// The single value of a field; a field given twice is an error.
    pub(crate) fn opt(&self, name: &'static str) -> Result<Option<&'a str>, DecodeError> {
        let mut found = None;
        for &(k, v) in &self.pairs {
            if k == name {
                if found.is_some() {
                    return Err(DecodeError::DuplicateField(name));
                }
                if v.len() > MAX_FIELD_BYTES {
                    return Err(DecodeError::TooLong {
                        field: name,
                        len: v.len(),
                        max: MAX_FIELD_BYTES,
                    });
                }
                found = Some(v);
            }
        }
        Ok(found)
    }

    /// [`Fields::req`] without the length limit, for fields only Pantheon writes whose length
    /// grows with the fleet (the flows of a rebalance that moved keys between many nodes).
    pub(crate) fn req_any_length(&self, name: &'static str) -> Result<&'a str, DecodeError> {
        let mut found = None;
        for &(k, v) in &self.pairs {
            if k == name {
                if found.is_some() {
                    return Err(DecodeError::DuplicateField(name));
                }
                found = Some(v);
            }
        }
        found.ok_or(DecodeError::MissingField(name))
    }

    pub(crate) fn req(&self, name: &'static str) -> Result<&'a str, DecodeError> {
        self.opt(name)?.ok_or(DecodeError::MissingField(name))
    }

    pub(crate) fn opt_num<T: std::str::FromStr>(
        &self,
        name: &'static str,
    ) -> Result<Option<T>, DecodeError> {
        self.opt(name)?
            .map(|v| {
                v.parse::<T>().map_err(|_| DecodeError::BadNumber {
                    field: name,
                    value: clip(v),
                })
            })
            .transpose()
    }

    pub(crate) fn opt_ranged(
        &self,
        name: &'static str,
        min: u32,
        max: u32,
    ) -> Result<Option<u32>, DecodeError> {
        match self.opt_num::<u64>(name)? {
            None => Ok(None),
            Some(v) if v >= u64::from(min) && v <= u64::from(max) => Ok(Some(v as u32)),
            Some(v) => Err(DecodeError::OutOfRange {
                field: name,
                value: v,
                min,
                max,
            }),
        }
    }

    /// Fails on any field outside `allowed` (typos like `wieght` must not pass silently).
    pub(crate) fn only(&self, kind: &'static str, allowed: &[&str]) -> Result<(), DecodeError> {
        match self.pairs.iter().find(|(k, _)| !allowed.contains(k)) {
            Some((k, _)) => Err(DecodeError::UnknownField {
                field: clip(k),
                kind,
            }),
            None => Ok(()),
        }
    }
}
