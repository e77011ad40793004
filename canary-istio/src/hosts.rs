//! Recognising the service among the hosts a route sends traffic to, and naming the canary
//! Service the same way.

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

/// The host of the canary Service `canary` spelt as `host` spells `service`: `reviews` gives
/// `reviews-canary`, `reviews.demo.svc.cluster.local` gives
/// `reviews-canary.demo.svc.cluster.local`. istiod resolves a host without a dot in the
/// namespace of the VirtualService or DestinationRule naming it and takes a host with one as
/// written (istio pilot/pkg/model/config.go `ResolveShortnameToFQDN`), so the canary Service is
/// named in the same namespace and cluster domain as the user's host. A host that does not
/// name `service` gives the short name.
pub fn canary_host(host: &str, service: &str, namespace: &str, canary: &str) -> String {
    if is_service_host(host, service, namespace) {
        let rest = host.strip_prefix(service).unwrap_or_default();
        format!("{canary}{rest}")
    } else {
        canary.to_owned()
    }
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

    #[test]
    fn the_canary_host_is_spelt_as_the_service_is() {
        for (host, canary) in [
            ("reviews", "reviews-canary"),
            ("reviews.demo", "reviews-canary.demo"),
            ("reviews.demo.svc", "reviews-canary.demo.svc"),
            (
                "reviews.demo.svc.cluster.local",
                "reviews-canary.demo.svc.cluster.local",
            ),
            ("ratings", "reviews-canary"),
        ] {
            assert_eq!(
                canary_host(host, "reviews", "demo", "reviews-canary"),
                canary,
                "{host}"
            );
        }
    }
}
