//! How a feed entry stores its keys. Keys may hold any character (quotes, commas, newlines),
//! so a list needs either quoting or lengths; both cost bytes per key. Keys of one change
//! usually share long prefixes (`tenant-0042…`, `user:17…`), so the list is written sorted and
//! front-coded: each key as `<shared>:<length>:<suffix>`, where `shared` is how many bytes it
//! has in common with the key before it and `length` is the byte length of the rest
//! (`pkeys`). When that is not shorter than a JSON array (keys with nothing in common), the
//! entry keeps the JSON array (`keys`). Readers accept either; the README's wire table
//! documents both.

/// Which field holds the keys, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    /// `keys`: a JSON array of strings.
    Json(String),
    /// `pkeys`: the sorted keys, front-coded.
    Prefixed(String),
}

impl Encoded {
    pub fn field(&self) -> &'static str {
        match self {
            Encoded::Json(_) => "keys",
            Encoded::Prefixed(_) => "pkeys",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Encoded::Json(v) | Encoded::Prefixed(v) => v,
        }
    }
}

/// The shorter of the two forms of `keys` (sorted in the front-coded one; a tie keeps JSON).
pub fn encode(keys: &[&str]) -> Encoded {
    let json = serde_json::to_string(keys).unwrap_or_else(|_| "[]".to_owned());
    let prefixed = front_code(keys);
    if prefixed.len() < json.len() {
        Encoded::Prefixed(prefixed)
    } else {
        Encoded::Json(json)
    }
}

fn front_code(keys: &[&str]) -> String {
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    let mut out = String::new();
    let mut previous = "";
    for key in sorted {
        let shared = shared_prefix(previous, key);
        let rest = &key[shared..];
        out.push_str(&format!("{shared}:{}:", rest.len()));
        out.push_str(rest);
        previous = key;
    }
    out
}

/// Bytes `a` and `b` have in common at the start, ending on a character boundary of both (so
/// every suffix is itself valid UTF-8).
fn shared_prefix(a: &str, b: &str) -> usize {
    let mut n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    while !b.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// Reads a `pkeys` value; the error says where it stops making sense.
pub fn decode_prefixed(value: &str) -> Result<Vec<String>, String> {
    let bytes = value.as_bytes();
    let mut keys: Vec<String> = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (shared, next) = number(bytes, at)?;
        let (length, next) = number(bytes, next)?;
        let previous = keys.last().map_or("", String::as_str);
        if shared > previous.len() {
            return Err(format!(
                "key {} shares {shared} bytes with a key of {}",
                keys.len() + 1,
                previous.len()
            ));
        }
        let end = next
            .checked_add(length)
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| format!("key {} runs past the end", keys.len() + 1))?;
        let mut key = previous.as_bytes()[..shared].to_vec();
        key.extend_from_slice(&bytes[next..end]);
        let key =
            String::from_utf8(key).map_err(|_| format!("key {} is not UTF-8", keys.len() + 1))?;
        if key.is_empty() {
            return Err(format!("key {} is empty", keys.len() + 1));
        }
        keys.push(key);
        at = end;
    }
    Ok(keys)
}

/// A decimal number at `at` ended by `:`; returns it and where the next field starts.
fn number(bytes: &[u8], at: usize) -> Result<(usize, usize), String> {
    let digits = bytes[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let end = at + digits;
    if digits == 0 || bytes.get(end) != Some(&b':') {
        return Err(format!("expected a number and ':' at byte {at}"));
    }
    let n = std::str::from_utf8(&bytes[at..end])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("number too large at byte {at}"))?;
    Ok((n, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decoded(e: &Encoded) -> Vec<String> {
        match e {
            Encoded::Json(v) => serde_json::from_str(v).unwrap(),
            Encoded::Prefixed(v) => decode_prefixed(v).unwrap(),
        }
    }

    #[test]
    fn keys_with_common_prefixes_are_front_coded_sorted() {
        let e = encode(&["tenant-0012", "tenant-0010", "tenant-0011"]);
        assert_eq!(
            e,
            Encoded::Prefixed("0:11:tenant-001010:1:110:1:2".to_owned())
        );
        assert_eq!(e.field(), "pkeys");
        assert_eq!(decoded(&e), ["tenant-0010", "tenant-0011", "tenant-0012"]);
    }

    #[test]
    fn keys_with_nothing_in_common_stay_a_json_array() {
        let e = encode(&["b", "a", "c"]);
        assert_eq!(e, Encoded::Json(r#"["b","a","c"]"#.to_owned()));
        assert_eq!(e.field(), "keys");
    }

    #[test]
    fn a_shared_prefix_never_splits_a_character() {
        // "é" is two bytes that share their first byte with "è".
        let e = front_code(&["aé-longer-key", "aè-longer-key"]);
        assert_eq!(
            decode_prefixed(&e).unwrap(),
            ["aè-longer-key", "aé-longer-key"]
        );
    }

    #[test]
    fn damaged_lists_are_errors_not_panics() {
        for bad in [
            "x",
            "1",
            "1:",
            "0:5:abc",
            "3:1:a",
            "0:1:a5:1:b",
            "0:0:",
            "0::a",
            "99999999999999999999999:1:a",
            "0:18446744073709551615:a",
        ] {
            assert!(decode_prefixed(bad).is_err(), "{bad:?} decoded");
        }
        assert_eq!(decode_prefixed("").unwrap(), Vec::<String>::new());
    }

    proptest! {
        #[test]
        fn every_list_round_trips_and_is_never_longer_than_json(
            keys in proptest::collection::vec("[a-c:0-9\"\\\\\u{e9}\n]{1,12}", 0..40)
        ) {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let e = encode(&refs);
            let json = serde_json::to_string(&refs).unwrap();
            prop_assert!(e.value().len() <= json.len());
            let mut want = keys.clone();
            let mut got = decoded(&e);
            want.sort();
            got.sort();
            prop_assert_eq!(got, want);
            let mut sorted = keys.clone();
            sorted.sort();
            prop_assert_eq!(decode_prefixed(&front_code(&refs)).unwrap(), sorted);
        }
    }
}
