//! Names the workload controllers make: the hash of a pod template (`pod-template-hash`,
//! `controller-revision-hash`) and the random-looking suffix of a pod's name, both
//! deterministic here.

use serde_json::Value;

/// The alphabet Kubernetes encodes generated names with (apimachinery
/// `util/rand.SafeEncodeString`: no vowels, no look-alike characters).
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-32a (the hash kube-controller-manager hashes pod templates with).
fn fnv32a(bytes: impl IntoIterator<Item = u8>) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Each character of `s` replaced by the safe alphabet's character at its byte value modulo
/// the alphabet's length, as `SafeEncodeString` does.
fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            char::from(
                SAFE.get(usize::from(b) % SAFE.len())
                    .copied()
                    .unwrap_or(b'b'),
            )
        })
        .collect()
}

/// The hash of a Deployment's or DaemonSet's pod template: as pkg/controller/controller_utils.go
/// `ComputeHash`, FNV-32a of the template (here its canonical JSON, object keys sorted, rather
/// than Go's deep printing) followed by the collision count as 8 little-endian bytes when there
/// is one, the decimal sum encoded with the safe alphabet.
pub(super) fn pod_template_hash(template: &Value, collision_count: Option<i64>) -> String {
    let mut bytes = canonical(template).into_bytes();
    if let Some(count) = collision_count {
        // The API keeps collisionCount in an int32; Go writes it as uint32 into 8 bytes.
        let count = u32::try_from(count.clamp(0, i64::from(i32::MAX))).unwrap_or(0);
        bytes.extend(count.to_le_bytes());
        bytes.extend([0u8; 4]);
    }
    safe_encode(&fnv32a(bytes).to_string())
}

/// The 5-character suffix of the `n`-th name tried for a pod of controller `owner` (the API
/// server's `generateName` draws 5 random characters of the safe alphabet; these are drawn
/// from a hash so that a run repeats).
pub(super) fn pod_suffix(owner_uid: &str, n: u64) -> String {
    let mut seed = fnv32a(owner_uid.bytes().chain(n.to_le_bytes()));
    let mut out = String::with_capacity(5);
    for _ in 0..5 {
        let len = u32::try_from(SAFE.len()).unwrap_or(27);
        let index = usize::try_from(seed % len).unwrap_or(0);
        out.push(char::from(SAFE.get(index).copied().unwrap_or(b'b')));
        seed = (seed / len) ^ seed.rotate_left(13).wrapping_mul(0x0100_0193);
    }
    out
}

/// JSON with object keys sorted, whatever order the value was built in.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let fields: Vec<String> = entries
                .into_iter()
                .map(|(key, v)| format!("{}:{}", Value::String(key.clone()), canonical(v)))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fnv32a_matches_the_reference_vectors() {
        assert_eq!(fnv32a(*b""), 0x811c_9dc5);
        assert_eq!(fnv32a(*b"a"), 0xe40c_292c);
        assert_eq!(fnv32a(*b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn hashes_are_stable_safe_and_change_with_the_template_and_collisions() {
        let a = json!({"metadata": {"labels": {"app": "web", "tier": "x"}}, "spec": {"containers": [{"name": "c", "image": "v1"}]}});
        let b = json!({"spec": {"containers": [{"image": "v1", "name": "c"}]}, "metadata": {"labels": {"tier": "x", "app": "web"}}});
        let hash = pod_template_hash(&a, None);
        assert_eq!(hash, pod_template_hash(&b, None));
        assert!(hash.bytes().all(|c| SAFE.contains(&c)), "{hash}");
        assert!((1..=10).contains(&hash.len()));
        let mut c = a.clone();
        c["spec"]["containers"][0]["image"] = json!("v2");
        assert_ne!(hash, pod_template_hash(&c, None));
        assert_ne!(hash, pod_template_hash(&a, Some(1)));
        assert_ne!(
            pod_template_hash(&a, Some(1)),
            pod_template_hash(&a, Some(2))
        );
    }

    #[test]
    fn pod_suffixes_are_five_safe_characters_and_vary() {
        let names: std::collections::BTreeSet<String> =
            (0..50).map(|n| pod_suffix("uid-1", n)).collect();
        assert!(names.len() >= 49);
        assert!(
            names
                .iter()
                .all(|s| s.len() == 5 && s.bytes().all(|c| SAFE.contains(&c)))
        );
    }
}
