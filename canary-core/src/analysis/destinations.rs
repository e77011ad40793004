//! Where a controller may send requests on a Rollout's behalf.
//!
//! Whoever may create a Rollout names the Prometheus servers its metrics are read from and the
//! webhooks its gates call, and the controller sends those requests from inside the cluster,
//! with the cluster's network reach. Without a limit any Rollout author could make it probe
//! internal services (server-side request forgery). The operator lists the places a controller
//! may call; a plan naming any other is refused before a request is sent.
//!
//! A destination is allowed when, after parsing and normalising both as URLs (scheme and host
//! lower-cased, default ports made explicit, `.`/`..` path segments resolved, IP addresses in
//! any notation written the one standard way):
//! - scheme, host and port are equal, and
//! - the destination's path is the allowed path or lies under it (`/hooks` allows `/hooks` and
//!   `/hooks/gate`, never `/hooksevil`).
//!
//! A destination carrying credentials (`http://user@host/`) is refused: credentials belong in
//! the controller's configuration, not in a Rollout.

use url::Url;

use crate::api::plan::RolloutPlan;

/// One allowed place: scheme, host, port and a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Allowed {
    scheme: String,
    host: String,
    port: u16,
    /// Always ends with `/`.
    path: String,
}

impl Allowed {
    fn parse(prefix: &str) -> Result<Self, String> {
        let url = http_url(prefix)?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "`{prefix}`: an allowed prefix has no query or fragment"
            ));
        }
        let (scheme, host, port) = origin(&url).ok_or_else(|| format!("`{prefix}` has no host"))?;
        let mut path = url.path().to_owned();
        if !path.ends_with('/') {
            path.push('/');
        }
        Ok(Allowed {
            scheme,
            host,
            port,
            path,
        })
    }

    fn allows(&self, url: &Url) -> bool {
        let Some((scheme, host, port)) = origin(url) else {
            return false;
        };
        let path = url.path();
        scheme == self.scheme
            && host == self.host
            && port == self.port
            && (path.starts_with(&self.path) || format!("{path}/") == self.path)
    }
}

/// An `http` or `https` URL without credentials.
fn http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{text}` is not an http or https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{text}` carries credentials; give them in the controller's configuration"
        ));
    }
    Ok(url)
}

/// Scheme, host and port (the scheme's default when not given).
fn origin(url: &Url) -> Option<(String, String, u16)> {
    Some((
        url.scheme().to_owned(),
        url.host_str()?.to_ascii_lowercase(),
        url.port_or_known_default()?,
    ))
}

/// The places a controller may send requests to for Rollouts: Prometheus servers and webhook
/// receivers, each a list of URL prefixes. The default allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destinations {
    metrics: Vec<Allowed>,
    webhooks: Vec<Allowed>,
}

/// A destination of a plan that is not allowed: where the spec names it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The spec field naming it, e.g. `spec.analysis.webhooks[0].url`.
    pub field: String,
    /// Why it is refused.
    pub reason: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl Destinations {
    /// Allows Prometheus servers under the `metrics` prefixes and webhooks under the
    /// `webhooks` prefixes.
    ///
    /// # Errors
    ///
    /// A prefix that is not an `http`/`https` URL with a host, or that has credentials, a query
    /// or a fragment.
    pub fn new<'a>(
        metrics: impl IntoIterator<Item = &'a str>,
        webhooks: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, String> {
        let parse = |prefixes: &mut dyn Iterator<Item = &'a str>| {
            prefixes.map(Allowed::parse).collect::<Result<Vec<_>, _>>()
        };
        Ok(Destinations {
            metrics: parse(&mut metrics.into_iter())?,
            webhooks: parse(&mut webhooks.into_iter())?,
        })
    }

    /// Exactly the destinations `plan` names (those that parse): for a simulation, where
    /// nothing is sent.
    pub fn named_by(plan: &RolloutPlan) -> Self {
        let analysis = &plan.analysis;
        let parse = |urls: &mut dyn Iterator<Item = &str>| {
            urls.filter_map(|url| Allowed::parse(url).ok())
                .collect::<Vec<_>>()
        };
        Destinations {
            metrics: parse(&mut analysis.metrics.iter().filter_map(|m| m.address.as_deref())),
            webhooks: parse(&mut analysis.webhooks.iter().map(|h| h.url.as_str())),
        }
    }

    /// Whether a Prometheus server at `address` may be asked.
    pub fn allows_metrics(&self, address: &str) -> Result<(), String> {
        allowed(&self.metrics, address, "Prometheus address")
    }

    /// Whether a webhook at `url` may be called.
    pub fn allows_webhook(&self, url: &str) -> Result<(), String> {
        allowed(&self.webhooks, url, "webhook URL")
    }

    /// Every destination of `plan` that is not allowed. Metrics that name no address go to the
    /// controller's own default server and are not checked here.
    pub fn refused(&self, plan: &RolloutPlan) -> Vec<Refused> {
        let metrics = plan
            .analysis
            .metrics
            .iter()
            .enumerate()
            .filter_map(|(i, metric)| {
                let address = metric.address.as_deref()?;
                let reason = self.allows_metrics(address).err()?;
                Some(Refused {
                    field: format!("spec.analysis.metrics[{i}].prometheus.address"),
                    reason,
                })
            });
        let webhooks = plan
            .analysis
            .webhooks
            .iter()
            .enumerate()
            .filter_map(|(i, hook)| {
                let reason = self.allows_webhook(&hook.url).err()?;
                Some(Refused {
                    field: format!("spec.analysis.webhooks[{i}].url"),
                    reason,
                })
            });
        metrics.chain(webhooks).collect()
    }
}

fn allowed(list: &[Allowed], destination: &str, what: &str) -> Result<(), String> {
    let url = http_url(destination)?;
    // The prefix is compared with the path as written; a server behind it may decode `%2f`,
    // `%5c` or `%2e` into separators and dots, or drop `;` parameters, and reach another path.
    let path = url.path().to_ascii_lowercase();
    if ["%2f", "%5c", "%2e", ";"]
        .iter()
        .any(|bad| path.contains(bad))
    {
        return Err(format!(
            "`{destination}`: an encoded `/`, `\\` or `.`, or a `;`, in the path is refused; \
             write the path plainly"
        ));
    }
    if list.iter().any(|allowed| allowed.allows(&url)) {
        return Ok(());
    }
    Err(if list.is_empty() {
        format!("`{destination}`: this controller allows no {what} from Rollouts")
    } else {
        let listed: Vec<String> = list
            .iter()
            .map(|a| format!("{}://{}:{}{}", a.scheme, a.host, a.port, a.path))
            .collect();
        format!(
            "`{destination}` is not under an allowed {what} prefix ({})",
            listed.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(prefixes: &[&str]) -> Destinations {
        Destinations::new([], prefixes.iter().copied()).unwrap()
    }

    #[test]
    fn a_destination_is_allowed_only_under_a_listed_prefix() {
        let allowed = hooks(&["https://gate.example.com/hooks", "http://10.0.0.7:8080"]);
        for ok in [
            "https://gate.example.com/hooks",
            "https://gate.example.com/hooks/",
            "https://gate.example.com/hooks/load?x=1",
            "https://GATE.example.com:443/hooks/a",
            "https://gate.example.com/hooks/a/../b",
            "http://10.0.0.7:8080/anything",
        ] {
            assert_eq!(allowed.allows_webhook(ok), Ok(()), "{ok}");
        }
        for refused in [
            "https://gate.example.com/hooksevil",
            "https://gate.example.com/hooks/../admin",
            "https://gate.example.com/other",
            "http://gate.example.com/hooks",
            "https://gate.example.com:8443/hooks",
            "https://gate.example.com.evil.io/hooks",
            "https://gate.example.com@169.254.169.254/hooks",
            "https://user:pw@gate.example.com/hooks",
            "http://10.0.0.7/anything",
            "http://169.254.169.254/latest/meta-data/",
            "file:///etc/passwd",
            "https://gate.example.com/hooks/..%2fadmin",
            "https://gate.example.com/hooks/..%2Fadmin",
            "https://gate.example.com/hooks/%2e%2e/admin",
            "https://gate.example.com/hooks/..%5cadmin",
            "https://gate.example.com/hooks/..;/admin",
            "gate.example.com/hooks",
        ] {
            assert!(allowed.allows_webhook(refused).is_err(), "{refused}");
        }
        // Another notation of an allowed IP address is the same address.
        assert_eq!(allowed.allows_webhook("http://0x0a000007:8080/x"), Ok(()));
    }

    #[test]
    fn nothing_is_allowed_by_default_and_bad_prefixes_are_refused() {
        let none = Destinations::default();
        let why = none.allows_metrics("http://prometheus:9090").unwrap_err();
        assert!(why.contains("allows no Prometheus address"), "{why}");
        for bad in [
            "prometheus:9090",
            "ftp://x/",
            "http://u:p@x/",
            "http://x/?q",
            "http:///",
        ] {
            assert!(Destinations::new([bad], []).is_err(), "{bad}");
        }
    }
}
