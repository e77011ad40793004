//! The ingress-nginx data plane: which pods answer a request the ingress controller receives.
//!
//! The model follows the controller in three stages, each from the upstream source:
//!
//! 1. **Which Ingresses it serves** (`internal/ingress/controller/store/store.go`,
//!    `GetIngressClass`): `spec.ingressClassName` naming an IngressClass of the controller, else
//!    the `kubernetes.io/ingress.class` annotation equal to `--ingress-class` (`nginx`), else
//!    only with `--watch-ingress-without-class`. Upstream's default for that flag is `false`
//!    (`pkg/flags/flags.go`): an Ingress without a class is ignored unless the cluster's default
//!    IngressClass filled the class in at creation. [`Controller::default`] serves class-less
//!    Ingresses (as a controller run with the flag, or a cluster with a default class);
//!    [`Controller::upstream_defaults`] does not.
//! 2. **The configuration it builds** (`internal/ingress/controller/controller.go`):
//!    `createUpstreams` (one backend per `namespace-service-port`, the first Ingress naming it
//!    decides whether it is a canary backend), `createServers` (one server per host of the
//!    non-canary Ingresses, each with a default `/` location), `getBackendServers` (locations by
//!    path and path type; the first Ingress for a path keeps it), `mergeAlternativeBackends`
//!    (a canary Ingress's backend becomes an alternative of the primary *backend* serving the same
//!    host, path and path type; unmatched canary backends are deleted), then the location sort and
//!    `updateServerLocations` (`location.go`: a Prefix path `/a` becomes `location /a/` plus
//!    `location = /a`). Path types: `internal/k8s/main.go` `SetDefaultNGINXPathType` turns a
//!    missing or `ImplementationSpecific` type into `Prefix`.
//! 3. **What the Lua balancer does per request** (`rootfs/etc/nginx/lua/balancer.lua`):
//!    `sync_backend` keeps no balancer for a backend without endpoints; `get_balancer` answers 503
//!    when the location's primary backend has none (canary or not); `route_to_alternative_balancer`
//!    looks only at the *first* alternative backend, falls back to the primary when that backend
//!    has no balancer, and decides header → cookie → weight.
//!
//! Of several canary Ingresses for one host and path only the first in the controller's order
//! (creation time, then `namespace/name` descending) shapes traffic; the controller's admission
//! webhook refuses a second one (`controller.go` `checkOverlap`), but Ingresses applied without
//! the webhook still reach this state.
//!
//! Annotations are read as `internal/ingress/annotations/canary/main.go` `Parse` reads them,
//! including the controller's own validation (`parser/validators.go`): an invalid value is
//! treated as absent. Not modelled: session affinity (a request pinned to a backend by the
//! affinity cookie), custom default-backend annotations, `service-upstream`, ExternalName
//! Services, TLS and redirects. The default backend answers 404 and is counted as answered by no
//! pod.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use regex::Regex;
use serde_json::Value;

use super::{Caller, PodRef, Request, Served, World, service_of_host, string_map};

/// The controller's default `--annotations-prefix`.
pub const DEFAULT_ANNOTATIONS_PREFIX: &str = "nginx.ingress.kubernetes.io";

/// The controller's default `--ingress-class` (the annotation value and IngressClass name).
pub const DEFAULT_INGRESS_CLASS: &str = "nginx";

/// The controller's default `--controller-class` (an IngressClass's `spec.controller`).
pub const DEFAULT_CONTROLLER_CLASS: &str = "k8s.io/ingress-nginx";

/// The name upstream gives the backend of the default server (its answer is a 404).
const DEFAULT_UPSTREAM: &str = "upstream-default-backend";

/// The catch-all server name upstream uses for rules without a host.
const DEFAULT_SERVER: &str = "_";

/// The IngressClass annotation marking the cluster's default class.
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// How the ingress controller is started: the flags that decide which Ingresses it serves and
/// how it reads their annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// `--annotations-prefix`.
    pub annotations_prefix: String,
    /// `--ingress-class`: the class annotation value it serves, and the IngressClass name it
    /// assumes is its own when the world holds no IngressClass of that name.
    pub ingress_class: String,
    /// `--controller-class`: the `spec.controller` of its IngressClasses.
    pub controller_class: String,
    /// `--watch-ingress-without-class`.
    pub watch_ingress_without_class: bool,
}

impl Controller {
    /// The controller as upstream starts it without flags: class-less Ingresses are ignored
    /// (unless an IngressClass of the controller is the cluster's default).
    pub fn upstream_defaults() -> Self {
        Controller {
            watch_ingress_without_class: false,
            ..Controller::default()
        }
    }
}

impl Default for Controller {
    /// The default prefix and class, serving Ingresses without a class too.
    fn default() -> Self {
        Controller {
            annotations_prefix: DEFAULT_ANNOTATIONS_PREFIX.to_owned(),
            ingress_class: DEFAULT_INGRESS_CLASS.to_owned(),
            controller_class: DEFAULT_CONTROLLER_CLASS.to_owned(),
            watch_ingress_without_class: true,
        }
    }
}

/// Who answers `request` in `world`, with the controller's default annotation prefix, serving
/// Ingresses of class `nginx` and Ingresses without a class.
///
/// Only [`Caller::IngressController`] goes through ingress-nginx; any other caller reaches a
/// Service the Kubernetes way (kube-proxy): evenly over its ready endpoints.
pub fn serve(world: &World, request: &Request) -> Served {
    serve_with(world, request, &Controller::default())
}

/// [`serve`] for a controller started with `--annotations-prefix=prefix`.
pub fn serve_with_prefix(world: &World, request: &Request, prefix: &str) -> Served {
    let controller = Controller {
        annotations_prefix: prefix.to_owned(),
        ..Controller::default()
    };
    serve_with(world, request, &controller)
}

/// [`serve`] for a controller started as `controller` says.
pub fn serve_with(world: &World, request: &Request, controller: &Controller) -> Served {
    match &request.caller {
        Caller::IngressController => Configuration::build(world, controller).serve(request),
        Caller::Sidecar { namespace } => kube_proxy(world, request, namespace),
        Caller::Gateway { namespace, .. } => kube_proxy(world, request, namespace),
    }
}

/// A plain in-cluster call to a Service: kube-proxy spreads it over the ready endpoints.
fn kube_proxy(world: &World, request: &Request, namespace: &str) -> Served {
    let Some((ns, name)) = service_of_host(&request.host, namespace) else {
        return Served::nobody(format!("{} names no Service", request.host));
    };
    let mut served = Served::default();
    served.spread(1.0, &world.endpoints(&ns, &name), || {
        format!("no endpoints for {ns}/{name}")
    });
    served
}

/// The traffic-shaping policy of a canary backend, as `newTrafficShapingPolicy` hands it to
/// the Lua balancer (zero values when the backend is not a canary's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Policy {
    weight: i64,
    weight_total: i64,
    header: String,
    header_value: String,
    header_pattern: String,
    cookie: String,
}

/// An Ingress the controller serves, with what the model reads from it.
#[derive(Debug)]
struct Ingress<'a> {
    namespace: String,
    created: String,
    key: String,
    object: &'a Value,
    canary: Option<Policy>,
    use_regex: bool,
    rewrite_target: Option<String>,
}

/// One backend (`upstream` in upstream's words).
#[derive(Debug, Clone, Default)]
struct Upstream {
    endpoints: Vec<PodRef>,
    no_server: bool,
    policy: Policy,
    alternatives: Vec<String>,
}

/// Path types after `SetDefaultNGINXPathType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathType {
    Exact,
    Prefix,
}

/// One nginx location.
#[derive(Debug, Clone)]
struct Location {
    path: String,
    path_type: PathType,
    backend: String,
    is_default: bool,
    use_regex: bool,
    rewrite: bool,
}

/// The configuration the controller hands nginx: servers by host name and backends by name.
#[derive(Debug, Default)]
struct Configuration {
    servers: BTreeMap<String, Vec<Location>>,
    upstreams: BTreeMap<String, Upstream>,
}

/// A path of an Ingress rule with a Service backend.
struct IngressPath {
    path: String,
    path_type: PathType,
    upstream: String,
    namespace: String,
    service: String,
    port: String,
}

impl Configuration {
    fn build(world: &World, controller: &Controller) -> Self {
        let ingresses = served_ingresses(world, controller);
        let mut config = Configuration::default();
        config.create_upstreams(world, &ingresses);
        config.create_servers(&ingresses);
        config.add_locations(&ingresses);
        // controller.go getBackendServers: merge only when some non-canary Ingress exists.
        if ingresses.iter().any(|ing| ing.canary.is_none()) {
            for ing in ingresses.iter().filter(|ing| ing.canary.is_some()) {
                config.merge_alternative_backends(ing);
            }
        }
        for locations in config.servers.values_mut() {
            // getBackendServers sorts by path (descending), then by length (descending),
            // both stable; getConfiguration then calls updateServerLocations.
            locations.sort_by(|a, b| b.path.cmp(&a.path));
            locations.sort_by_key(|l| std::cmp::Reverse(l.path.len()));
            *locations = update_server_locations(std::mem::take(locations));
        }
        config
    }

    /// controller.go createUpstreams.
    fn create_upstreams(&mut self, world: &World, ingresses: &[Ingress<'_>]) {
        for ing in ingresses {
            let make = |path: &IngressPath| Upstream {
                endpoints: service_endpoints(world, &path.namespace, &path.service, &path.port),
                no_server: ing.canary.is_some(),
                policy: ing.canary.clone().unwrap_or_default(),
                alternatives: Vec::new(),
            };
            if let Some(default) = default_backend(ing) {
                // The Ingress's default backend is (re)created unconditionally.
                self.upstreams
                    .insert(default.upstream.clone(), make(&default));
            }
            for path in rule_paths(ing).into_iter().flat_map(|(_, paths)| paths) {
                if !self.upstreams.contains_key(&path.upstream) {
                    self.upstreams.insert(path.upstream.clone(), make(&path));
                }
            }
        }
    }

    /// controller.go createServers: the default server, and one server per host of the
    /// non-canary Ingresses with a `/` location on their default backend.
    fn create_servers(&mut self, ingresses: &[Ingress<'_>]) {
        self.servers.insert(
            DEFAULT_SERVER.to_owned(),
            vec![default_location(DEFAULT_UPSTREAM)],
        );
        for ing in ingresses.iter().filter(|ing| ing.canary.is_none()) {
            let mut backend = DEFAULT_UPSTREAM.to_owned();
            if let Some(default) = default_backend(ing)
                && self.upstreams.contains_key(&default.upstream)
            {
                backend = default.upstream;
                let has_rules = ing.object["spec"]["rules"]
                    .as_array()
                    .is_some_and(|rules| !rules.is_empty());
                if let Some(root) = self
                    .servers
                    .get_mut(DEFAULT_SERVER)
                    .and_then(|locations| locations.first_mut())
                    && root.is_default
                    && !has_rules
                {
                    root.backend = backend.clone();
                    root.is_default = false;
                }
            }
            for rule in rules(ing) {
                let host = rule_host(rule);
                self.servers
                    .entry(host)
                    .or_insert_with(|| vec![default_location(&backend)]);
            }
        }
    }

    /// controller.go getBackendServers: every Ingress's paths become locations of its host's
    /// server (or the default server); the first Ingress for a path and path type keeps it.
    fn add_locations(&mut self, ingresses: &[Ingress<'_>]) {
        for ing in ingresses {
            for (host, paths) in rule_paths(ing) {
                let server = if self.servers.contains_key(&host) {
                    host
                } else {
                    DEFAULT_SERVER.to_owned()
                };
                for path in paths {
                    let Some(upstream) = self.upstreams.get(&path.upstream) else {
                        continue;
                    };
                    if upstream.no_server {
                        continue;
                    }
                    let Some(locations) = self.servers.get_mut(&server) else {
                        continue;
                    };
                    let nginx_path = if path.path.is_empty() {
                        "/".to_owned()
                    } else {
                        path.path.clone()
                    };
                    let rewrite = ing
                        .rewrite_target
                        .as_ref()
                        .is_some_and(|target| *target != nginx_path);
                    let mut add = true;
                    if let Some(held) = locations.iter_mut().find(|l| l.path == nginx_path)
                        && held.path_type == path.path_type
                    {
                        add = false;
                        if held.is_default {
                            held.backend = path.upstream.clone();
                            held.is_default = false;
                            held.use_regex = ing.use_regex;
                            held.rewrite = rewrite;
                        }
                    }
                    if add {
                        locations.push(Location {
                            path: nginx_path,
                            path_type: path.path_type,
                            backend: path.upstream.clone(),
                            is_default: false,
                            use_regex: ing.use_regex,
                            rewrite,
                        });
                    }
                }
            }
        }
    }

    /// controller.go mergeAlternativeBackends for one canary Ingress.
    fn merge_alternative_backends(&mut self, ing: &Ingress<'_>) {
        if let Some(default) = default_backend(ing) {
            self.merge_into(DEFAULT_SERVER, &default.upstream, |_| true);
        }
        for (host, paths) in rule_paths(ing) {
            for path in paths {
                if !self.upstreams.contains_key(&path.upstream) || !self.servers.contains_key(&host)
                {
                    continue;
                }
                self.merge_into(&host, &path.upstream, |location| {
                    location.path == path.path && location.path_type == path.path_type
                });
            }
        }
    }

    /// Merges backend `alternative` into the primary backends of the locations of `server`
    /// that `matches` picks; deletes it when it merges nowhere (and is no primary there).
    fn merge_into(&mut self, server: &str, alternative: &str, matches: impl Fn(&Location) -> bool) {
        if !self.upstreams.contains_key(alternative) {
            return;
        }
        let locations = self.servers.get(server).cloned().unwrap_or_default();
        let mut merged = false;
        let mut alt_equals_primary = false;
        for location in &locations {
            let Some(primary) = self.upstreams.get_mut(&location.backend) else {
                continue;
            };
            alt_equals_primary = location.backend == alternative;
            if alt_equals_primary {
                break;
            }
            // canMergeBackend: not the default backend, and the primary has a server.
            let can_merge = location.backend != DEFAULT_UPSTREAM && !primary.no_server;
            if can_merge && matches(location) {
                if !primary.alternatives.iter().any(|a| a == alternative) {
                    primary.alternatives.push(alternative.to_owned());
                }
                merged = true;
            }
        }
        if !alt_equals_primary && !merged {
            self.upstreams.remove(alternative);
        }
    }

    fn serve(&self, request: &Request) -> Served {
        let host = request.host.trim_end_matches('.').to_ascii_lowercase();
        let server = self.server_for(&host);
        let Some(location) = self
            .servers
            .get(server)
            .and_then(|locations| find_location(locations, &request.path))
        else {
            return Served::nobody(format!("404: no location for {host}{}", request.path));
        };
        if location.backend == DEFAULT_UPSTREAM {
            return Served::nobody(format!(
                "404: {host}{} matches no Ingress path (default backend)",
                request.path
            ));
        }
        // balancer.lua get_balancer: no balancer for the primary backend → 503.
        let Some(primary) = self
            .upstreams
            .get(&location.backend)
            .filter(|u| !u.endpoints.is_empty())
        else {
            return Served::nobody(format!(
                "503: backend {} has no endpoints",
                location.backend
            ));
        };
        // route_to_alternative_balancer: only the first alternative, and only with a balancer.
        let alternative = primary
            .alternatives
            .first()
            .and_then(|name| self.upstreams.get(name))
            .filter(|u| !u.endpoints.is_empty());
        let mut served = Served::default();
        let share = alternative.map_or(0.0, |alt| canary_share(&alt.policy, request));
        served.spread(1.0 - share, &primary.endpoints, String::new);
        if let Some(alt) = alternative {
            served.spread(share, &alt.endpoints, String::new);
        }
        served
    }

    /// nginx server selection: the exact name, then the wildcard servers (rendered by
    /// template.go buildServerName as `^[\w-]+\.rest$`, one label), then the default server.
    fn server_for(&self, host: &str) -> &str {
        if let Some((name, _)) = self.servers.get_key_value(host) {
            return name;
        }
        self.servers
            .keys()
            .find(|name| {
                name.strip_prefix("*.").is_some_and(|rest| {
                    host.strip_suffix(rest)
                        .and_then(|head| head.strip_suffix('.'))
                        .is_some_and(|label| {
                            !label.is_empty()
                                && label
                                    .chars()
                                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                        })
                })
            })
            .map_or(DEFAULT_SERVER, String::as_str)
    }
}

/// location.go updateServerLocations.
fn update_server_locations(locations: Vec<Location>) -> Vec<Location> {
    let exact: Vec<String> = locations
        .iter()
        .filter(|l| l.path_type == PathType::Exact)
        .map(|l| l.path.clone())
        .collect();
    let mut out = Vec::with_capacity(locations.len() * 2);
    for mut location in locations {
        if location.path == "/"
            || location.path_type != PathType::Prefix
            || location.rewrite
            || location.use_regex
        {
            out.push(location);
            continue;
        }
        let has_exact = exact.contains(&location.path);
        let mut exact_copy = location.clone();
        if !location.path.ends_with('/') {
            location.path.push('/');
        }
        out.push(location);
        if !has_exact {
            exact_copy.path_type = PathType::Exact;
            out.push(exact_copy);
        }
    }
    out
}

/// nginx location selection. When any location of the server uses a regex or a rewrite,
/// template.go enforceRegexModifier renders every location as `~* "^path"` and nginx takes the
/// first that matches, in order; otherwise `= path` locations match exactly and the longest
/// matching prefix location wins.
fn find_location<'a>(locations: &'a [Location], path: &str) -> Option<&'a Location> {
    if locations.iter().any(|l| l.use_regex || l.rewrite) {
        return locations
            .iter()
            .find(|l| Regex::new(&format!("(?i)^{}", l.path)).is_ok_and(|re| re.is_match(path)));
    }
    if let Some(exact) = locations
        .iter()
        .find(|l| l.path_type == PathType::Exact && l.path == path)
    {
        return Some(exact);
    }
    locations
        .iter()
        .filter(|l| l.path_type == PathType::Prefix && path.starts_with(l.path.as_str()))
        .fold(None, |best: Option<&Location>, l| match best {
            Some(b) if b.path.len() >= l.path.len() => Some(b),
            _ => Some(l),
        })
}

/// balancer.lua route_to_alternative_balancer, as the share of such requests sent to the
/// alternative backend: the header decides when it matches (or says `never`), then the
/// cookie, then `math.random(weightTotal) <= weight`.
fn canary_share(policy: &Policy, request: &Request) -> f64 {
    if !policy.header.is_empty()
        && let Some(value) = header(request, &policy.header)
    {
        if !policy.header_value.is_empty() {
            if value == policy.header_value {
                return 1.0;
            }
        } else if !policy.header_pattern.is_empty() {
            // ngx.re.match(header, pattern): PCRE, unanchored. A pattern that fails to compile
            // keeps the request on the primary, without looking at cookie or weight.
            match Regex::new(&policy.header_pattern) {
                Ok(re) if re.is_match(value) => return 1.0,
                Ok(_) => {}
                Err(_) => return 0.0,
            }
        } else if value == "always" {
            return 1.0;
        } else if value == "never" {
            return 0.0;
        }
    }
    if !policy.cookie.is_empty()
        && let Some(value) = cookie(request, &policy.cookie)
    {
        if value == "always" {
            return 1.0;
        }
        if value == "never" {
            return 0.0;
        }
    }
    let total = if policy.weight_total > 100 {
        policy.weight_total
    } else {
        100
    };
    policy.weight.clamp(0, total) as f64 / total as f64
}

/// `ngx.var["http_" .. name]`: nginx compares header names lower-cased with `-` as `_`.
fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    let wanted = nginx_var_name(name);
    request
        .headers
        .iter()
        .find(|(key, _)| nginx_var_name(key) == wanted)
        .map(|(_, value)| value.as_str())
}

/// `ngx.var["cookie_" .. name]`: nginx compares cookie names without regard to case.
fn cookie<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .cookies
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

fn nginx_var_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('-', "_")
}

fn default_location(backend: &str) -> Location {
    Location {
        path: "/".to_owned(),
        path_type: PathType::Prefix,
        backend: backend.to_owned(),
        is_default: true,
        use_regex: false,
        rewrite: false,
    }
}

/// The Ingresses the controller serves, in its order (store.go sortIngressSlice: by creation
/// time, then by `namespace/name` descending).
fn served_ingresses<'a>(world: &'a World, controller: &Controller) -> Vec<Ingress<'a>> {
    let mut out: Vec<Ingress<'a>> = world
        .all("Ingress")
        .filter(|ing| class_served(world, ing, controller))
        .map(|object| {
            let namespace = object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned();
            let name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let annotations = Annotations {
                map: string_map(object.pointer("/metadata/annotations")),
                prefix: &controller.annotations_prefix,
            };
            Ingress {
                key: format!("{namespace}/{name}"),
                namespace,
                created: object
                    .pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                object,
                canary: annotations.canary(),
                use_regex: annotations.boolean("use-regex").unwrap_or(false),
                rewrite_target: annotations.string("rewrite-target", valid_rewrite),
            }
        })
        .collect();
    out.sort_by(|a, b| match a.created.cmp(&b.created) {
        Ordering::Equal => b.key.cmp(&a.key),
        other => other,
    });
    out
}

/// store.go GetIngressClass, with the IngressClass lister filtered to the controller's
/// classes.
fn class_served(world: &World, ing: &Value, controller: &Controller) -> bool {
    let ours = |class: &Value| class["spec"]["controller"] == controller.controller_class.as_str();
    if let Some(name) = ing
        .pointer("/spec/ingressClassName")
        .and_then(Value::as_str)
    {
        return match world.get("IngressClass", "", name) {
            Some(class) => ours(class),
            // The world holds no such IngressClass: the controller's own class is assumed
            // installed (as its Helm chart does), others are not.
            None => name == controller.ingress_class,
        };
    }
    if let Some(class) = ing
        .pointer("/metadata/annotations/kubernetes.io~1ingress.class")
        .and_then(Value::as_str)
    {
        return class == controller.ingress_class;
    }
    // The API server's DefaultIngressClass admission fills in the default class at creation.
    let default_class_is_ours = world.all("IngressClass").any(|class| {
        ours(class)
            && class
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .and_then(Value::as_str)
                == Some("true")
    });
    controller.watch_ingress_without_class || default_class_is_ours
}

/// An Ingress's annotations read through the parser package (`parser/main.go`,
/// `parser/validators.go` checkAnnotation): with the prefix, validated, invalid values absent.
struct Annotations<'a> {
    map: BTreeMap<String, String>,
    prefix: &'a str,
}

impl Annotations<'_> {
    fn raw(&self, name: &str) -> Option<&str> {
        self.map
            .get(&format!("{}/{name}", self.prefix))
            .map(String::as_str)
    }

    /// GetBoolAnnotation: strconv.ParseBool.
    fn boolean(&self, name: &str) -> Option<bool> {
        match self.raw(name)? {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
            _ => None,
        }
    }

    /// GetIntAnnotation: strconv.Atoi.
    fn int(&self, name: &str) -> Option<i64> {
        self.raw(name)?.parse().ok()
    }

    /// GetStringAnnotation: validated (when not empty), each line trimmed, empty is absent.
    fn string(&self, name: &str, valid: fn(&str) -> bool) -> Option<String> {
        let raw = self.raw(name)?;
        if raw.contains(['\r', '\n']) || !valid(raw) {
            return None;
        }
        let normalized = raw
            .split('\n')
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("\n");
        (!normalized.is_empty()).then_some(normalized)
    }

    /// canary/main.go Parse: `canary` must parse as true; weight defaults to 0, total to 100,
    /// strings to empty. A canary configured but not enabled is no canary.
    fn canary(&self) -> Option<Policy> {
        if self.boolean("canary") != Some(true) {
            return None;
        }
        let text =
            |name: &str, valid: fn(&str) -> bool| self.string(name, valid).unwrap_or_default();
        Some(Policy {
            weight: self.int("canary-weight").unwrap_or(0),
            weight_total: self.int("canary-weight-total").unwrap_or(100),
            header: text("canary-by-header", valid_basic),
            header_value: text("canary-by-header-value", valid_basic),
            header_pattern: text("canary-by-header-pattern", valid_regex),
            cookie: text("canary-by-cookie", valid_basic),
        })
    }
}

/// validators.go BasicCharsRegex (spaces removed first): `[/\-._~a-zA-Z0-9:]*`.
fn valid_basic(value: &str) -> bool {
    value
        .chars()
        .filter(|c| *c != ' ')
        .all(|c| c.is_ascii_alphanumeric() || "/-._~:".contains(c))
}

/// validators.go IsValidRegex (spaces kept): BasicChars plus `^$[](){}*+?|&=\`.
fn valid_regex(value: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/-._~:^$[](){}*+?|&=\\".contains(c))
}

/// The rewrite annotation's validator (RegexPathWithCapture), loosely: any single line.
fn valid_rewrite(_: &str) -> bool {
    true
}

fn rules<'a>(ing: &Ingress<'a>) -> impl Iterator<Item = &'a Value> + 'a {
    ing.object["spec"]["rules"].as_array().into_iter().flatten()
}

fn rule_host(rule: &Value) -> String {
    match rule["host"].as_str() {
        Some(host) if !host.is_empty() => host.to_ascii_lowercase(),
        _ => DEFAULT_SERVER.to_owned(),
    }
}

/// The Service-backed paths of each rule of `ing` with an `http` section, by host.
fn rule_paths(ing: &Ingress<'_>) -> Vec<(String, Vec<IngressPath>)> {
    rules(ing)
        .filter(|rule| rule["http"].is_object())
        .map(|rule| {
            let paths = rule["http"]["paths"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|path| {
                    let backend = service_backend(&ing.namespace, &path["backend"])?;
                    let path_type = match path["pathType"].as_str() {
                        Some("Exact") => PathType::Exact,
                        _ => PathType::Prefix,
                    };
                    Some(IngressPath {
                        path: path["path"].as_str().unwrap_or_default().to_owned(),
                        path_type,
                        ..backend
                    })
                })
                .collect();
            (rule_host(rule), paths)
        })
        .collect()
}

fn default_backend(ing: &Ingress<'_>) -> Option<IngressPath> {
    service_backend(&ing.namespace, &ing.object["spec"]["defaultBackend"])
}

/// An Ingress backend naming a Service, with upstream's backend name (util.go upstreamName).
fn service_backend(namespace: &str, backend: &Value) -> Option<IngressPath> {
    let service = backend["service"]["name"].as_str()?;
    let port = &backend["service"]["port"];
    let port = match (port["number"].as_i64(), port["name"].as_str()) {
        (Some(number), _) if number > 0 => number.to_string(),
        (_, Some(name)) if !name.is_empty() => name.to_owned(),
        _ => String::new(),
    };
    let upstream = if port.is_empty() {
        format!("{namespace}-INVALID")
    } else {
        format!("{namespace}-{service}-{port}")
    };
    Some(IngressPath {
        path: String::new(),
        path_type: PathType::Prefix,
        upstream,
        namespace: namespace.to_owned(),
        service: service.to_owned(),
        port,
    })
}

/// controller.go serviceEndpoints: the Service's port whose number, target port or name equals
/// the backend's port gives the endpoints; no such port (or an ExternalName Service) gives none.
fn service_endpoints(world: &World, namespace: &str, service: &str, port: &str) -> Vec<PodRef> {
    let Some(svc) = world.get("Service", namespace, service) else {
        return Vec::new();
    };
    if svc["spec"]["type"] == "ExternalName" {
        return Vec::new();
    }
    let as_text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let has_port = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| {
            let number = as_text(&p["port"]);
            let target = as_text(&p["targetPort"]).or_else(|| number.clone());
            number.as_deref() == Some(port)
                || target.as_deref() == Some(port)
                || p["name"].as_str() == Some(port)
        });
    if has_port {
        world.endpoints(namespace, service)
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const P: &str = "nginx.ingress.kubernetes.io";

    fn service(name: &str, app: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": "shop"},
               "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    }

    fn pod(name: &str, app: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
               "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    }

    fn ingress(name: &str, host: &str, path: &str, service: &str, annotations: Value) -> Value {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": name, "namespace": "shop", "annotations": annotations,
                            "creationTimestamp": "2026-01-01T00:00:00Z"},
               "spec": {"ingressClassName": "nginx", "rules": [{"host": host, "http": {"paths": [
                   {"path": path, "pathType": "Prefix",
                    "backend": {"service": {"name": service, "port": {"number": 80}}}}]}}]}})
    }

    fn canary(annotations: &[(&str, &str)]) -> Value {
        let mut map = serde_json::Map::new();
        map.insert(format!("{P}/canary"), json!("true"));
        for (k, v) in annotations {
            map.insert(format!("{P}/{k}"), json!(v));
        }
        Value::Object(map)
    }

    /// Stable `web` (pods s1, s2) behind `web.example.com/`, canary `web-canary` (pod c1)
    /// with the given canary annotations.
    fn world(annotations: &[(&str, &str)]) -> World {
        World::new(vec![
            service("web", "web"),
            service("web-canary", "web-canary"),
            pod("s1", "web"),
            pod("s2", "web"),
            pod("c1", "web-canary"),
            ingress("web", "web.example.com", "/", "web", json!({})),
            later(ingress(
                "web-canary",
                "web.example.com",
                "/",
                "web-canary",
                canary(annotations),
            )),
        ])
    }

    /// `object` created a day after the others.
    fn later(mut object: Value) -> Value {
        object["metadata"]["creationTimestamp"] = json!("2026-01-02T00:00:00Z");
        object
    }

    fn get(path: &str) -> Request {
        Request::to("web.example.com", path).from(Caller::IngressController)
    }

    fn stable(served: &Served) -> f64 {
        served.share(|p| p.name.starts_with('s'))
    }

    fn canary_of(served: &Served) -> f64 {
        served.share(|p| p.name.starts_with('c'))
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn weight_splits_between_primary_and_canary_pods() {
        let served = serve(&world(&[("canary-weight", "30")]), &get("/cart"));
        assert!(close(canary_of(&served), 0.3), "{served:?}");
        assert!(close(stable(&served), 0.7));
        let s1 = PodRef {
            namespace: "shop".into(),
            name: "s1".into(),
        };
        assert!(close(served.pods[&s1], 0.35));
        assert!(close(served.unserved(), 0.0));
    }

    #[test]
    fn a_primary_without_endpoints_fails_everything_canary_or_not() {
        let mut objects = vec![
            service("web", "web"),
            service("web-canary", "web-canary"),
            pod("c1", "web-canary"),
            ingress("web", "web.example.com", "/", "web", json!({})),
            ingress(
                "web-canary",
                "web.example.com",
                "/",
                "web-canary",
                canary(&[("canary-weight", "100"), ("canary-by-header", "X-Canary")]),
            ),
        ];
        let world = World::new(objects.clone());
        for request in [get("/"), get("/").header("X-Canary", "always")] {
            let served = serve(&world, &request);
            assert!(close(served.unserved(), 1.0), "{served:?}");
            assert!(
                served
                    .unserved_because
                    .as_deref()
                    .is_some_and(|w| w.starts_with("503"))
            );
        }
        objects.push(pod("s1", "web"));
        let served = serve(&World::new(objects), &get("/"));
        assert!(close(canary_of(&served), 1.0));
    }

    #[test]
    fn a_canary_without_endpoints_leaves_everything_on_the_primary() {
        let world = World::new(vec![
            service("web", "web"),
            service("web-canary", "web-canary"),
            pod("s1", "web"),
            ingress("web", "web.example.com", "/", "web", json!({})),
            ingress(
                "web-canary",
                "web.example.com",
                "/",
                "web-canary",
                canary(&[("canary-weight", "100")]),
            ),
        ]);
        let served = serve(&world, &get("/"));
        assert!(close(stable(&served), 1.0), "{served:?}");
    }

    #[test]
    fn header_decides_before_cookie_and_cookie_before_weight() {
        let world = world(&[
            ("canary-weight", "50"),
            ("canary-by-header", "X-Canary"),
            ("canary-by-cookie", "canary"),
        ]);
        let cases = [
            (get("/"), 0.5),
            (
                get("/")
                    .header("X-Canary", "always")
                    .cookie("canary", "never"),
                1.0,
            ),
            (
                get("/")
                    .header("X-Canary", "never")
                    .cookie("canary", "always"),
                0.0,
            ),
            (
                get("/")
                    .header("X-Canary", "maybe")
                    .cookie("canary", "always"),
                1.0,
            ),
            (
                get("/")
                    .header("X-Canary", "maybe")
                    .cookie("canary", "never"),
                0.0,
            ),
            (get("/").cookie("canary", "always"), 1.0),
            (get("/").cookie("canary", "sometimes"), 0.5),
            // nginx matches header names case-insensitively, `-` as `_`.
            (get("/").header("x_canary", "always"), 1.0),
        ];
        for (request, want) in cases {
            let served = serve(&world, &request);
            assert!(
                close(canary_of(&served), want),
                "{request:?} → {served:?}, want {want}"
            );
        }
    }

    #[test]
    fn header_value_is_exact_and_otherwise_falls_through() {
        let world = world(&[
            ("canary-weight", "0"),
            ("canary-by-header", "X-Version"),
            ("canary-by-header-value", "v2"),
            ("canary-by-cookie", "canary"),
        ]);
        assert!(close(
            canary_of(&serve(&world, &get("/").header("x-version", "v2"))),
            1.0
        ));
        assert!(close(
            canary_of(&serve(&world, &get("/").header("x-version", "v22"))),
            0.0
        ));
        // With a value set, "never" is just another non-matching value: the cookie decides.
        let request = get("/")
            .header("x-version", "never")
            .cookie("canary", "always");
        assert!(close(canary_of(&serve(&world, &request)), 1.0));
    }

    #[test]
    fn header_pattern_is_an_unanchored_search() {
        let world = world(&[
            ("canary-by-header", "X-User"),
            ("canary-by-header-pattern", "beta|internal"),
        ]);
        let to_canary = |value: &str| canary_of(&serve(&world, &get("/").header("x-user", value)));
        assert!(close(to_canary("beta"), 1.0));
        assert!(close(to_canary("not-beta-at-all"), 1.0));
        assert!(close(to_canary("internals"), 1.0));
        assert!(close(to_canary("gamma"), 0.0));

        let anchored = world_with_pattern("^(beta|internal)$", "0");
        let to_canary =
            |value: &str| canary_of(&serve(&anchored, &get("/").header("x-user", value)));
        assert!(close(to_canary("beta"), 1.0));
        assert!(close(to_canary("not-beta-at-all"), 0.0));
    }

    fn world_with_pattern(pattern: &str, weight: &str) -> World {
        world(&[
            ("canary-weight", weight),
            ("canary-by-header", "X-User"),
            ("canary-by-header-pattern", pattern),
        ])
    }

    #[test]
    fn a_pattern_that_fails_to_compile_keeps_the_primary_despite_the_weight() {
        let world = world_with_pattern("(unclosed", "100");
        let served = serve(&world, &get("/").header("x-user", "anything"));
        assert!(close(stable(&served), 1.0), "{served:?}");
        // Without the header the weight applies.
        assert!(close(canary_of(&serve(&world, &get("/"))), 1.0));
    }

    #[test]
    fn header_value_wins_over_pattern() {
        let world = world(&[
            ("canary-by-header", "X-User"),
            ("canary-by-header-value", "alice"),
            ("canary-by-header-pattern", ".*"),
        ]);
        assert!(close(
            canary_of(&serve(&world, &get("/").header("x-user", "bob"))),
            0.0
        ));
        assert!(close(
            canary_of(&serve(&world, &get("/").header("x-user", "alice"))),
            1.0
        ));
    }

    #[test]
    fn invalid_header_values_are_ignored_as_the_controller_validates_them() {
        // `@` is not among the characters the controller accepts: no header rule at all.
        let world = world(&[
            ("canary-weight", "0"),
            ("canary-by-header", "X-User"),
            ("canary-by-header-value", "a@b"),
        ]);
        assert!(close(
            canary_of(&serve(&world, &get("/").header("x-user", "a@b"))),
            0.0
        ));
        assert!(close(
            canary_of(&serve(&world, &get("/").header("x-user", "always"))),
            1.0
        ));
    }

    #[test]
    fn weight_total_applies_only_above_100() {
        let share =
            |annotations: &[(&str, &str)]| canary_of(&serve(&world(annotations), &get("/")));
        assert!(close(
            share(&[("canary-weight", "5"), ("canary-weight-total", "1000")]),
            0.005
        ));
        assert!(close(
            share(&[("canary-weight", "5"), ("canary-weight-total", "10")]),
            0.05
        ));
        assert!(close(share(&[("canary-weight", "500")]), 1.0));
        assert!(close(share(&[("canary-weight", "-3")]), 0.0));
        assert!(close(share(&[("canary-weight", "ten")]), 0.0));
    }

    #[test]
    fn only_the_first_canary_ingress_counts() {
        let mut late = ingress(
            "b-canary",
            "web.example.com",
            "/",
            "web-canary",
            canary(&[("canary-weight", "100")]),
        );
        late["metadata"]["creationTimestamp"] = json!("2026-01-02T00:00:00Z");
        let mut early = ingress(
            "z-other",
            "web.example.com",
            "/",
            "other",
            canary(&[("canary-weight", "0")]),
        );
        early["metadata"]["creationTimestamp"] = json!("2026-01-01T12:00:00Z");
        let world = World::new(vec![
            service("web", "web"),
            service("web-canary", "web-canary"),
            service("other", "other"),
            pod("s1", "web"),
            pod("c1", "web-canary"),
            pod("o1", "other"),
            ingress("web", "web.example.com", "/", "web", json!({})),
            late,
            early,
        ]);
        let served = serve(&world, &get("/"));
        assert!(close(stable(&served), 1.0), "{served:?}");
    }

    #[test]
    fn canary_ingresses_created_together_are_ordered_by_namespace_and_name_descending() {
        let world = World::new(vec![
            service("web", "web"),
            service("web-canary", "web-canary"),
            service("other", "other"),
            pod("s1", "web"),
            pod("c1", "web-canary"),
            pod("o1", "other"),
            ingress("web", "web.example.com", "/", "web", json!({})),
            ingress(
                "a-canary",
                "web.example.com",
                "/",
                "web-canary",
                canary(&[("canary-weight", "100")]),
            ),
            ingress(
                "z-canary",
                "web.example.com",
                "/",
                "other",
                canary(&[("canary-weight", "100")]),
            ),
        ]);
        let served = serve(&world, &get("/"));
        assert!(close(served.share(|p| p.name == "o1"), 1.0), "{served:?}");
    }

    #[test]
    fn an_ingress_as_users_write_it_with_a_canary_as_the_docs_show() {
        // The class by annotation, an ImplementationSpecific root path, a named Service port;
        // the canary Ingress copies the rule and adds the canary annotations.
        let rule = json!([{"host": "echoserver.example.com", "http": {"paths": [
            {"path": "/", "pathType": "ImplementationSpecific",
             "backend": {"service": {"name": "echoserver", "port": {"number": 8080}}}}]}}]);
        let mut canary_rule = rule.clone();
        canary_rule[0]["http"]["paths"][0]["backend"]["service"]["name"] =
            json!("echoserver-canary");
        let svc = |name: &str, app: &str| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "demo"},
                   "spec": {"selector": {"app": app},
                            "ports": [{"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}]}})
        };
        let pod = |name: &str, app: &str| {
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": "demo", "labels": {"app": app}},
                   "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        };
        let world = World::new(vec![
            svc("echoserver", "echoserver"),
            svc("echoserver-canary", "echoserver-canary"),
            pod("s1", "echoserver"),
            pod("s2", "echoserver"),
            pod("c1", "echoserver-canary"),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                   "metadata": {"name": "echoserver", "namespace": "demo",
                                "annotations": {"kubernetes.io/ingress.class": "nginx"}},
                   "spec": {"rules": rule}}),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                   "metadata": {"name": "echoserver-canary", "namespace": "demo",
                                "annotations": {"kubernetes.io/ingress.class": "nginx",
                                                "nginx.ingress.kubernetes.io/canary": "true",
                                                "nginx.ingress.kubernetes.io/canary-weight": "20",
                                                "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary"}},
                   "spec": {"rules": canary_rule}}),
        ]);
        let request =
            Request::to("echoserver.example.com", "/echo").from(Caller::IngressController);
        let served = serve_with(&world, &request, &Controller::upstream_defaults());
        assert!(close(canary_of(&served), 0.2), "{served:?}");
        assert!(close(stable(&served), 0.8));
        let pinned = serve(&world, &request.clone().header("X-Canary", "never"));
        assert!(close(stable(&pinned), 1.0));
    }

    #[test]
    fn use_regex_turns_every_location_of_the_server_into_a_case_insensitive_regex() {
        let mut versioned = ingress(
            "versioned",
            "web.example.com",
            "/api/v[0-9]+",
            "api",
            json!({"nginx.ingress.kubernetes.io/use-regex": "true"}),
        );
        versioned["spec"]["rules"][0]["http"]["paths"][0]["pathType"] =
            json!("ImplementationSpecific");
        let world = World::new(vec![
            service("web", "web"),
            service("api", "api"),
            pod("s1", "web"),
            pod("a1", "api"),
            ingress("web", "web.example.com", "/", "web", json!({})),
            versioned,
        ]);
        let api_share = |path: &str| serve(&world, &get(path)).share(|p| p.name == "a1");
        assert!(close(api_share("/api/v2/items"), 1.0));
        assert!(close(api_share("/API/V2"), 1.0));
        assert!(close(api_share("/api/latest"), 0.0));
        // The regex is anchored at the start only.
        assert!(close(api_share("/api/v2beta"), 1.0));
    }

    #[test]
    fn requests_matching_no_ingress_get_404() {
        let world = world(&[("canary-weight", "50")]);
        let served = serve(
            &world,
            &Request::to("other.example.com", "/").from(Caller::IngressController),
        );
        assert!(close(served.unserved(), 1.0));
        assert!(
            served
                .unserved_because
                .as_deref()
                .is_some_and(|w| w.starts_with("404"))
        );

        // A canary Ingress alone makes no server: its host gets the default backend.
        let alone = World::new(vec![
            service("web-canary", "web-canary"),
            pod("c1", "web-canary"),
            ingress(
                "web-canary",
                "web.example.com",
                "/",
                "web-canary",
                canary(&[("canary-weight", "100")]),
            ),
        ]);
        assert!(close(serve(&alone, &get("/")).unserved(), 1.0));
    }

    #[test]
    fn prefix_paths_match_whole_segments_and_the_longest_wins() {
        let mut api = ingress("api", "web.example.com", "/api", "api", json!({}));
        api["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = json!("ImplementationSpecific");
        let mut exact = ingress("exact", "web.example.com", "/exact", "api", json!({}));
        exact["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = json!("Exact");
        let world = World::new(vec![
            service("web", "web"),
            service("api", "api"),
            pod("s1", "web"),
            pod("a1", "api"),
            ingress("web", "web.example.com", "/", "web", json!({})),
            api,
            exact,
        ]);
        let api_share = |path: &str| serve(&world, &get(path)).share(|p| p.name == "a1");
        assert!(close(api_share("/api"), 1.0));
        assert!(close(api_share("/api/v1/items"), 1.0));
        assert!(close(api_share("/apiary"), 0.0));
        assert!(close(api_share("/exact"), 1.0));
        assert!(close(api_share("/exact/more"), 0.0));
        assert!(close(
            serve(&world, &get("/apiary")).share(|p| p.name == "s1"),
            1.0
        ));
    }

    #[test]
    fn canary_rules_apply_to_the_primary_backend_wherever_it_serves() {
        // The alternative is attached to the primary backend `shop-web-80`, so another host
        // routed to the same Service is split too.
        let mut objects = vec![
            service("web", "web"),
            service("web-canary", "web-canary"),
            pod("s1", "web"),
            pod("c1", "web-canary"),
            ingress("web", "web.example.com", "/", "web", json!({})),
            ingress(
                "web-canary",
                "web.example.com",
                "/",
                "web-canary",
                canary(&[("canary-weight", "40")]),
            ),
        ];
        objects.push(ingress("www", "www.example.com", "/", "web", json!({})));
        let world = World::new(objects);
        let served = serve(
            &world,
            &Request::to("www.example.com", "/").from(Caller::IngressController),
        );
        assert!(close(canary_of(&served), 0.4), "{served:?}");
    }

    #[test]
    fn a_canary_on_another_path_merges_nowhere() {
        let world = World::new(vec![
            service("web", "web"),
            service("web-canary", "web-canary"),
            pod("s1", "web"),
            pod("c1", "web-canary"),
            ingress("web", "web.example.com", "/", "web", json!({})),
            ingress(
                "web-canary",
                "web.example.com",
                "/shop",
                "web-canary",
                canary(&[("canary-weight", "100")]),
            ),
        ]);
        for path in ["/", "/shop"] {
            assert!(close(stable(&serve(&world, &get(path))), 1.0));
        }
    }

    #[test]
    fn ingress_classes() {
        let mut other = world(&[("canary-weight", "100")]);
        let mut objects: Vec<Value> = other.objects().iter().cloned().collect();
        for o in &mut objects {
            if o["kind"] == "Ingress" {
                o["spec"]["ingressClassName"] = json!("traefik");
            }
        }
        other = World::new(objects.clone());
        assert!(close(serve(&other, &get("/")).unserved(), 1.0));

        for o in &mut objects {
            if o["kind"] == "Ingress" {
                o["spec"]
                    .as_object_mut()
                    .map(|s| s.remove("ingressClassName"));
            }
        }
        let classless = World::new(objects.clone());
        assert!(close(canary_of(&serve(&classless, &get("/"))), 1.0));
        let upstream = Controller::upstream_defaults();
        assert!(close(
            serve_with(&classless, &get("/"), &upstream).unserved(),
            1.0
        ));

        objects.push(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "nginx", "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
            "spec": {"controller": DEFAULT_CONTROLLER_CLASS}}),
        );
        let defaulted = World::new(objects.clone());
        assert!(close(
            canary_of(&serve_with(&defaulted, &get("/"), &upstream)),
            1.0
        ));

        for o in &mut objects {
            if o["kind"] == "Ingress" {
                o["metadata"]["annotations"]["kubernetes.io/ingress.class"] = json!("other");
            }
        }
        assert!(close(
            serve(&World::new(objects), &get("/")).unserved(),
            1.0
        ));
    }

    #[test]
    fn the_annotation_prefix_is_the_controllers() {
        let world = world(&[("canary-weight", "100")]);
        assert!(close(canary_of(&serve(&world, &get("/"))), 1.0));
        // With another prefix the canary annotations are not read: the canary Ingress is a
        // second primary for the same path, and the older one keeps it.
        let served = serve_with_prefix(&world, &get("/"), "example.com");
        assert!(close(stable(&served), 1.0), "{served:?}");
        let objects: Vec<Value> = world
            .objects()
            .iter()
            .map(|o| {
                let mut o = o.clone();
                if o["kind"] == "Ingress" {
                    let canary = std::mem::take(&mut o["metadata"]["annotations"]);
                    o["metadata"]["annotations"] = json!({});
                    for (k, v) in canary.as_object().into_iter().flatten() {
                        let key = k.replace(P, "example.com");
                        o["metadata"]["annotations"][key] = v.clone();
                    }
                }
                o
            })
            .collect();
        let served = serve_with_prefix(&World::new(objects), &get("/"), "example.com");
        assert!(close(canary_of(&served), 1.0), "{served:?}");
    }

    #[test]
    fn wildcard_hosts_match_one_label() {
        let world = World::new(vec![
            service("web", "web"),
            pod("s1", "web"),
            ingress("web", "*.example.com", "/", "web", json!({})),
        ]);
        let at = |host: &str| {
            serve(
                &world,
                &Request::to(host, "/").from(Caller::IngressController),
            )
        };
        assert!(close(stable(&at("shop.example.com")), 1.0));
        assert!(close(at("a.b.example.com").unserved(), 1.0));
    }

    #[test]
    fn a_backend_port_the_service_lacks_has_no_endpoints() {
        let mut ing = ingress("web", "web.example.com", "/", "web", json!({}));
        ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] =
            json!({"number": 81});
        let world = World::new(vec![service("web", "web"), pod("s1", "web"), ing.clone()]);
        assert!(close(serve(&world, &get("/")).unserved(), 1.0));
        ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] =
            json!({"name": "http"});
        let world = World::new(vec![service("web", "web"), pod("s1", "web"), ing]);
        assert!(close(stable(&serve(&world, &get("/"))), 1.0));
    }

    #[test]
    fn in_cluster_callers_reach_the_service_directly() {
        let world = world(&[("canary-weight", "100")]);
        let served = serve(&world, &Request::to("web.shop", "/"));
        assert!(close(stable(&served), 1.0), "{served:?}");
    }
}
