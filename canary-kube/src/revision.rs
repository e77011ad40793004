//! Revisions: a short, stable hash of what a pod runs (its template, the data of the ConfigMaps
//! it uses and the versions of the Secrets it uses).

use serde_json::Value;

/// FNV-1a over the canonical JSON of `value` (object keys sorted), as 10 hex digits. Stable
/// across processes and versions, unlike the standard library's hasher.
pub fn hash(value: &Value) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in canonical(value).bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:010x}", hash & 0xff_ffff_ffff)
}

/// JSON with object keys in sorted order, whatever order the value was built in.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|key| format!("{}:{}", Value::String(key.clone()), canonical(&map[key])))
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
    fn the_hash_ignores_key_order_but_not_content() {
        let a = json!({"spec": {"containers": [{"name": "app", "image": "v1"}]}, "x": 1});
        let b = json!({"x": 1, "spec": {"containers": [{"image": "v1", "name": "app"}]}});
        let c = json!({"x": 1, "spec": {"containers": [{"image": "v2", "name": "app"}]}});
        assert_eq!(hash(&a), hash(&b));
        assert_ne!(hash(&a), hash(&c));
        assert_eq!(hash(&a).len(), 10);
    }
}
