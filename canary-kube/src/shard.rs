//! Shards: Rollouts split between controller replicas by a stable hash of their namespace
//! and name, so that each replica (with its own Lease) reconciles its share.

use std::fmt;
use std::str::FromStr;

/// The most shards a controller may be split in.
pub const MAX_SHARDS: u32 = 1024;

/// Shard `index` of `count` (`--shard 2/4`: the third of four, counted from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// Why a shard is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a shard is INDEX/COUNT with COUNT from 1 to {MAX_SHARDS} and INDEX from 0 to COUNT-1 \
     (e.g. 0/3), not {0:?}"
)]
pub struct BadShard(String);

impl Shard {
    /// Shard `index` of `count`.
    pub fn new(index: u32, count: u32) -> Result<Self, BadShard> {
        if count == 0 || count > MAX_SHARDS || index >= count {
            return Err(BadShard(format!("{index}/{count}")));
        }
        Ok(Shard { index, count })
    }

    /// Its index, from 0.
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many shards there are.
    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether Rollout `namespace/name` is this shard's: the 64-bit FNV-1a hash of
    /// `namespace/name`, modulo the shard count, is its index. The hash is fixed (not the
    /// standard library's randomly seeded one), so every replica, of any build, agrees.
    pub fn owns(self, namespace: &str, name: &str) -> bool {
        let key = namespace.bytes().chain([b'/']).chain(name.bytes());
        fnv1a(key) % u64::from(self.count) == u64::from(self.index)
    }

    /// The leader-election Lease of this shard's replicas, named after the unsharded
    /// controller's `lease`: `LEASE-shard-INDEX-of-COUNT`. Each shard elects its own leader, so
    /// N shards run N leaders at once, and a replica of a shard only ever stands in for that
    /// shard. With `None` (no sharding) it is `lease` itself.
    pub fn lease(shard: Option<Shard>, lease: &str) -> String {
        match shard {
            Some(shard) => format!("{lease}-shard-{}-of-{}", shard.index, shard.count),
            None => lease.to_owned(),
        }
    }
}

/// The 64-bit FNV-1a hash of `bytes`.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = BadShard;

    fn from_str(text: &str) -> Result<Self, BadShard> {
        let bad = || BadShard(text.to_owned());
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index = index.trim().parse().map_err(|_| bad())?;
        let count = count.trim().parse().map_err(|_| bad())?;
        Shard::new(index, count).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rollout_is_in_exactly_one_shard_and_shards_are_even() {
        let count = 4;
        let shards: Vec<Shard> = (0..count).map(|i| Shard::new(i, count).unwrap()).collect();
        let mut sizes = vec![0u32; count as usize];
        for n in 0..10_000 {
            let name = format!("app-{n}");
            let owners: Vec<&Shard> = shards.iter().filter(|s| s.owns("team-a", &name)).collect();
            assert_eq!(owners.len(), 1, "{name}");
            sizes[owners[0].index() as usize] += 1;
        }
        // 2 500 each on average; a fair hash keeps every shard within 10 %.
        assert!(
            sizes.iter().all(|&size| (2_250..=2_750).contains(&size)),
            "{sizes:?}"
        );
    }

    #[test]
    fn the_split_is_stable_across_builds() {
        // The published FNV-1a test vectors: a change of hash would move Rollouts between
        // replicas running different versions.
        assert_eq!(fnv1a(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(*b"foobar"), 0x8594_4171_f739_67e8);
        let key = |ns: &str, name: &str| fnv1a(format!("{ns}/{name}").into_bytes());
        let shard = Shard::new(1, 3).unwrap();
        for name in ["web", "api", "db", "cache"] {
            assert_eq!(
                shard.owns("prod", name),
                key("prod", name) % 3 == 1,
                "{name}"
            );
        }
    }

    #[test]
    fn shards_are_read_from_index_slash_count() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard::new(2, 4).unwrap()));
        for bad in ["4/4", "0/0", "1", "a/b", "-1/3", "0/2000"] {
            let error = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(
                error.contains(bad) && error.contains("INDEX/COUNT"),
                "{error}"
            );
        }
    }
}
