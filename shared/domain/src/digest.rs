//! The hasher of the state checksum: xxh3, fed in large blocks.
//!
//! The checksum is taken at every commit and feeds each node's fields one by one, tens of
//! thousands of small slices at 10,000 nodes. xxh3's streaming update has a cost per call
//! that made the checksum about a millisecond per commit there; gathering the slices into
//! blocks first leaves the digest as it was (a streaming hash does not depend on how its input
//! is split), so checksums already stored still match.

use xxhash_rust::xxh3::Xxh3;

/// Bytes gathered before they are hashed.
const BLOCK: usize = 16 * 1024;

/// An xxh3 hasher that gathers its input into blocks.
#[derive(Clone)]
pub struct Digest {
    hasher: Xxh3,
    block: Vec<u8>,
}

impl Default for Digest {
    fn default() -> Self {
        Self {
            hasher: Xxh3::new(),
            block: Vec::with_capacity(BLOCK),
        }
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Digest").finish_non_exhaustive()
    }
}

impl Digest {
    pub fn update(&mut self, bytes: &[u8]) {
        if self.block.len() + bytes.len() > BLOCK {
            self.hasher.update(&self.block);
            self.block.clear();
        }
        if bytes.len() >= BLOCK {
            self.hasher.update(bytes);
        } else {
            self.block.extend_from_slice(bytes);
        }
    }

    pub fn digest(mut self) -> u64 {
        self.hasher.update(&self.block);
        self.hasher.digest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_digest_is_xxh3_of_all_the_input_however_it_comes(
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40_000), 0..12)
        ) {
            let mut digest = Digest::default();
            let mut all = Vec::new();
            for piece in &pieces {
                digest.update(piece);
                all.extend_from_slice(piece);
            }
            prop_assert_eq!(digest.digest(), xxhash_rust::xxh3::xxh3_64(&all));
        }
    }
}
