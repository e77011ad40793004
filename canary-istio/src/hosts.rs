//! Recognising the service among the hosts a route sends traffic to.

/// True when `host` names `service` in `namespace`: the short name, `<svc>.<ns>`,
/// `<svc>.<ns>.svc` or the fully qualified `<svc>.<ns>.svc.<cluster domain>`.
pub fn is_service_host(host: &str, service: &str, namespace: &str) -> bool {
    if host == service {
        return true;
    }
    let Some(rest) = host
        .strip_prefix(service)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_prefix(namespace))
    else {
        return false;
    };
    rest.is_empty() || rest == ".svc" || rest.starts_with(".svc.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_the_service_and_no_other() {
        for host in [
            "reviews",
            "reviews.demo",
            "reviews.demo.svc",
            "reviews.demo.svc.cluster.local",
        ] {
            assert!(is_service_host(host, "reviews", "demo"), "{host}");
        }
        for host in [
            "reviews2",
            "reviews.other",
            "reviews.demo.example.com",
            "ratings",
        ] {
            assert!(!is_service_host(host, "reviews", "demo"), "{host}");
        }
    }
}
