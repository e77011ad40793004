//! Kubernetes naming rules, each returning the reason a value breaks it.

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Lowercase letters, digits and '-', starting and ending with a letter or digit.
fn is_label(value: &str) -> bool {
    !value.is_empty()
        && value.chars().all(|c| is_alnum_lower(c) || c == '-')
        && value.starts_with(is_alnum_lower)
        && value.ends_with(is_alnum_lower)
}

/// Letters, digits, '-', '_' and '.', starting and ending with a letter or digit, or empty.
fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// A DNS-1123 label: lowercase letters, digits and `-`, starting and ending with a letter or
/// digit, at most 63 characters (container names, Service names).
pub fn dns1123_label(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err(format!("`{value}` is longer than 63 characters"));
    }
    if !is_label(value) {
        return Err(format!(
            "`{value}` must be lowercase letters, digits and '-', starting and ending with a \
             letter or digit"
        ));
    }
    Ok(())
}

/// A DNS-1123 subdomain: labels joined by `.`, at most 253 characters (object names).
pub fn dns1123_subdomain(value: &str) -> Result<(), String> {
    if value.len() > 253 {
        return Err(format!("`{value}` is longer than 253 characters"));
    }
    if value.is_empty() || !value.split('.').all(is_label) {
        return Err(format!(
            "`{value}` must be lowercase letters, digits, '-' and '.', starting and ending with \
             a letter or digit"
        ));
    }
    Ok(())
}

/// A version label: lowercase letters and digits only, at most 16 characters.
pub fn version_label(value: &str) -> Result<(), String> {
    if value.len() > 16 || value.is_empty() || !value.chars().all(is_alnum_lower) {
        return Err(format!(
            "`{value}` must be 1 to 16 lowercase letters and digits"
        ));
    }
    Ok(())
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters.
pub fn label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        dns1123_subdomain(prefix).map_err(|reason| format!("label key prefix: {reason}"))?;
    }
    if name.is_empty() || name.len() > 63 || !is_label_value(name) {
        return Err(format!(
            "label key `{key}` must end in a name of 1 to 63 letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

/// A label value: at most 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter
/// or digit (or empty).
pub fn label_value(value: &str) -> Result<(), String> {
    if value.len() > 63 || !is_label_value(value) {
        return Err(format!(
            "label value `{value}` must be at most 63 letters, digits, '-', '_' or '.', starting \
             and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A resource quantity such as `500m`, `2`, `256Mi` or `1e3`, as its value in base units.
pub fn quantity(value: &str) -> Result<f64, String> {
    let invalid = || format!("`{value}` is not a quantity (write e.g. 500m, 2, 256Mi)");
    let digits_end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(digits_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(invalid());
    }
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E']).ok_or_else(invalid)?;
            let power: i32 = digits.parse().map_err(|_| invalid())?;
            10f64.powi(power)
        }
    };
    Ok(number * scale)
}

/// A header name as meshes match it: a lowercase HTTP token.
pub fn header_name(name: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("`{name}` is not an HTTP header name"));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("`{name}`: write header names in lowercase"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        assert!(dns1123_label("reviews-v2").is_ok());
        assert!(dns1123_label(&"a".repeat(63)).is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(dns1123_label(bad).is_err(), "{bad}");
        }
        assert!(dns1123_subdomain("reviews.demo").is_ok());
        assert!(dns1123_subdomain(&"a".repeat(253)).is_ok());
        assert!(dns1123_subdomain(&"a".repeat(254)).is_err());
        for bad in ["", "a..b", ".a", "a.", "Reviews"] {
            assert!(dns1123_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn version_labels_are_short_lowercase_alphanumerics() {
        assert!(version_label("v2").is_ok());
        assert!(version_label("abcdefghij123456").is_ok());
        for bad in ["", "V2", "v-2", "v.2", "abcdefghij1234567"] {
            assert!(version_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        assert!(label_key("ASM_TRAFFIC_TAG").is_ok());
        assert!(label_key("app.kubernetes.io/name").is_ok());
        assert!(label_key("/name").is_err());
        assert!(label_value("canary").is_ok());
        assert!(label_value("").is_ok());
        assert!(label_value("-x").is_err());
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("500m"), Ok(0.5));
        assert_eq!(quantity("2"), Ok(2.0));
        assert_eq!(quantity("256Mi"), Ok(256.0 * 1024.0 * 1024.0));
        assert_eq!(quantity("1e3"), Ok(1000.0));
        assert!(quantity("1.5 cores").is_err());
        assert!(quantity("-1").is_err());
    }
}
