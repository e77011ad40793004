//! A program embedding canary as its users do: an in-house edge proxy that splits a pool's
//! traffic by weight (and, when configured, sends the requests carrying one header value to the
//! canary), and a pool of virtual machines as the workload. Both are built on `canary-core`'s
//! public API alone, from its documentation: an API change that would break an embedder breaks
//! this crate's build or tests first.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use canary_core::analysis::queries::MetricFamily;
use canary_core::api::spec::{RequestMatch, StringMatch, TrafficRouting};
use canary_core::api::validate::Checker;
use canary_core::engine::providers::{
    Clock, TrafficObservation, TrafficProvider, Verification, WorkloadObservation,
    WorkloadProvider, WorkloadState,
};
use canary_core::jiff::{SignedDuration, Timestamp};
use canary_core::serde_json::Value;
use canary_core::sim::SimWorkload;
use canary_core::traffic::{Capabilities, MatchKinds, ProviderDescriptor};
use canary_core::{Error, ErrorClass, RouteState, async_trait};

/// The proxy's name in a Rollout: `trafficRouting.plugin.name: edge-proxy`.
pub const NAME: &str = "edge-proxy";

/// The proxy's weights are thousandths.
const TOTAL: u32 = 1000;

/// What canary knows of the proxy: what it routes (from its `config`), the metrics it exports
/// per pool, and the rules of its `config` and of the matches it takes.
pub static EDGE_PROXY: ProviderDescriptor = ProviderDescriptor::plugin(NAME, capabilities)
    .with_metrics(MetricFamily {
        requests: "edge_requests_total",
        duration_bucket: "edge_request_duration_seconds_bucket",
        to_millis: " * 1000",
        canary: r#"pool="{{ service }}-canary""#,
        stable: r#"pool="{{ service }}""#,
        code: "status",
    })
    .with_settings_rules(check_config)
    .with_match_rules(check_match);

/// The same proxy without metrics of its own: builtin metrics are refused for it.
pub static BARE_PROXY: ProviderDescriptor =
    ProviderDescriptor::plugin("bare-proxy", |_| Capabilities::weights_only());

/// Weights always; with `config.headerRouting: true`, also one match on one header's exact
/// value.
fn capabilities(routing: &TrafficRouting) -> Capabilities {
    let header_routing = routing
        .plugin_config()
        .and_then(|config| config.get("headerRouting"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !header_routing {
        return Capabilities::weights_only();
    }
    Capabilities {
        max_matches: 1,
        max_headers: 1,
        headers: MatchKinds::new(true, false, false),
        ..Capabilities::weights_only()
    }
}

/// `config` holds `pool` (required) and `headerRouting` (a boolean), nothing else.
fn check_config(c: &mut Checker, routing: &TrafficRouting) {
    let here = "spec.trafficRouting.plugin.config";
    let Some(config) = routing.plugin_config() else {
        return;
    };
    let pool = config
        .get("pool")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if pool.is_empty() {
        c.error(
            format!("{here}.pool"),
            "the pool to route: a name is required",
        );
    }
    if config.get("headerRouting").is_some_and(|v| !v.is_boolean()) {
        c.error(format!("{here}.headerRouting"), "must be true or false");
    }
    for key in config.keys() {
        if key != "pool" && key != "headerRouting" {
            c.error(
                format!("{here}.{key}"),
                "unknown setting (allowed: pool, headerRouting)",
            );
        }
    }
}

/// The proxy compares header names as written: they must be lowercase.
fn check_match(c: &mut Checker, here: &str, request: &RequestMatch) {
    for name in request.headers.keys() {
        if name.chars().any(|ch| ch.is_ascii_uppercase()) {
            c.error(
                format!("{here}.headers.{name}"),
                "the edge proxy matches lowercase header names only",
            );
        }
    }
}

/// Where the proxy sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// The stable pool.
    Stable,
    /// The canary pool.
    Canary,
}

/// The proxy's routing table for one pool, as its admin API holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Table {
    /// Stable's and the canary's weights, in thousandths.
    stable: u32,
    canary: u32,
    /// Requests with this header and value go to the canary.
    header: Option<(String, String)>,
}

/// The edge proxy's admin API for one pool, held in memory.
#[derive(Debug, Clone)]
pub struct EdgeRouter {
    table: Arc<Mutex<Table>>,
    writes: Arc<Mutex<u32>>,
}

impl Default for EdgeRouter {
    fn default() -> Self {
        EdgeRouter {
            table: Arc::new(Mutex::new(Table {
                stable: TOTAL,
                canary: 0,
                header: None,
            })),
            writes: Arc::default(),
        }
    }
}

impl EdgeRouter {
    fn table(&self) -> Table {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many times the table was changed.
    pub fn writes(&self) -> u32 {
        *self.writes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the proxy sends a request carrying `headers`, whose weighted draw is `draw`
    /// (`0..1000`, uniform over requests).
    pub fn route(&self, headers: &BTreeMap<String, String>, draw: u32) -> Pool {
        let table = self.table();
        let matched = table
            .header
            .as_ref()
            .is_some_and(|(name, value)| headers.get(name) == Some(value));
        if matched || draw < table.canary {
            Pool::Canary
        } else {
            Pool::Stable
        }
    }

    /// How many of 1000 requests carrying `headers` (one per draw) the canary gets.
    pub fn canary_share(&self, headers: &BTreeMap<String, String>) -> u32 {
        let canary = (0..TOTAL).filter(|draw| self.route(headers, *draw) == Pool::Canary);
        u32::try_from(canary.count()).unwrap_or(u32::MAX)
    }

    /// Edits the table behind canary's back, as an operator at the admin API would.
    pub fn tamper(&self, canary: u32) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.canary = canary.min(TOTAL);
        table.stable = TOTAL - table.canary;
    }
}

/// The one header match of `route` the proxy can hold, or why it cannot.
fn header_of(route: &RouteState) -> canary_core::Result<Option<(String, String)>> {
    let refuse = |why: &str| Err(Error::provider(NAME, ErrorClass::Invalid, why.to_owned()));
    match route.matches.as_slice() {
        [] => Ok(None),
        [request] => {
            let mut headers = request.headers.iter();
            match (headers.next(), headers.next()) {
                (Some((name, condition)), None) if request.uri.is_none() => {
                    match &condition.exact {
                        Some(value) => Ok(Some((name.clone(), value.clone()))),
                        None => refuse("only an exact header value can be matched"),
                    }
                }
                _ => refuse("only one header condition can be matched"),
            }
        }
        _ => refuse("only one match can be routed"),
    }
}

#[async_trait]
impl TrafficProvider for EdgeRouter {
    async fn apply(&self, route: &RouteState) -> canary_core::Result<bool> {
        if route.mirror.is_some_and(|percent| percent > 0) {
            return Err(Error::provider(
                NAME,
                ErrorClass::Invalid,
                "the edge proxy cannot mirror",
            ));
        }
        let canary = (u64::from(route.weight) * u64::from(TOTAL) / u64::from(route.total.max(1)))
            .min(u64::from(TOTAL));
        let canary = u32::try_from(canary).unwrap_or(TOTAL);
        let wanted = Table {
            stable: TOTAL - canary,
            canary,
            header: header_of(route)?,
        };
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if *table == wanted {
            return Ok(false);
        }
        *table = wanted;
        *self.writes.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        Ok(true)
    }

    /// The table mapped back to a route: weights in thousandths (the engine compares routes by
    /// what they mean, so 250 of 1000 is the 25 of 100 it applied).
    async fn observe(&self, applied: &RouteState) -> canary_core::Result<TrafficObservation> {
        let table = self.table();
        let matches = table
            .header
            .map(|(name, value)| RequestMatch {
                headers: BTreeMap::from([(name, StringMatch::exact(&value))]),
                ..RequestMatch::default()
            })
            .into_iter()
            .collect();
        let route = RouteState {
            weight: table.canary,
            total: table.stable + table.canary,
            matches,
            mirror: None,
        };
        let verified = if route.same_as(applied) {
            Verification::Yes
        } else {
            Verification::No
        };
        Ok(TrafficObservation {
            route: Some(route),
            verified,
            pending: None,
        })
    }

    async fn finalize(&self) -> canary_core::Result<()> {
        self.apply(&RouteState::stable()).await.map(drop)
    }
}

/// One group of virtual machines running a revision.
#[derive(Debug, Clone)]
struct Group {
    revision: String,
    /// When each machine has booted.
    booted_at: Vec<Timestamp>,
}

impl Group {
    fn new(revision: &str, machines: u32, ready_at: Timestamp) -> Self {
        Group {
            revision: revision.to_owned(),
            booted_at: vec![ready_at; machines as usize],
        }
    }

    fn state(&self, now: Timestamp) -> WorkloadState {
        let up = self.booted_at.iter().filter(|at| **at <= now).count();
        let up = u32::try_from(up).unwrap_or(u32::MAX);
        WorkloadState {
            revision: self.revision.clone(),
            desired: u32::try_from(self.booted_at.len()).unwrap_or(u32::MAX),
            ready: up,
            available: up,
            stale: false,
        }
    }
}

/// The machines of one pool and of its canary, booting in `boot` after they are asked for.
#[derive(Clone)]
pub struct VmPool {
    state: Arc<Mutex<Machines>>,
    clock: Arc<dyn Clock>,
    boot: SignedDuration,
}

struct Machines {
    desired: String,
    stable: Group,
    canary: Option<Group>,
}

impl VmPool {
    /// `machines` machines running `revision`, booting new ones in `boot`, on `clock`'s time.
    pub fn new(
        revision: &str,
        machines: u32,
        boot: SignedDuration,
        clock: impl Clock + 'static,
    ) -> Self {
        let now = clock.now();
        VmPool {
            state: Arc::new(Mutex::new(Machines {
                desired: revision.to_owned(),
                stable: Group::new(revision, machines, now),
                canary: None,
            })),
            clock: Arc::new(clock),
            boot,
        }
    }

    fn machines(&self) -> std::sync::MutexGuard<'_, Machines> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The revision the pool's stable machines run.
    pub fn stable_revision(&self) -> String {
        self.machines().stable.revision.clone()
    }

    /// Whether canary machines exist.
    pub fn has_canary(&self) -> bool {
        self.machines().canary.is_some()
    }

    fn ready_at(&self) -> Timestamp {
        let now = self.clock.now();
        now.checked_add(self.boot).unwrap_or(now)
    }
}

impl SimWorkload for VmPool {
    fn release(&self, revision: &str) {
        self.machines().desired = revision.to_owned();
    }
}

#[async_trait]
impl WorkloadProvider for VmPool {
    async fn observe(&self) -> canary_core::Result<WorkloadObservation> {
        let now = self.clock.now();
        let machines = self.machines();
        Ok(WorkloadObservation {
            desired_revision: machines.desired.clone(),
            stable: machines.stable.state(now),
            canary: machines.canary.as_ref().map(|group| group.state(now)),
            stable_reported_as: None,
        })
    }

    async fn ensure_canary(&self, revision: &str, replicas: u32) -> canary_core::Result<bool> {
        let ready_at = self.ready_at();
        let mut machines = self.machines();
        let canary = machines
            .canary
            .get_or_insert_with(|| Group::new(revision, 0, ready_at));
        if canary.revision != revision {
            *canary = Group::new(revision, 0, ready_at);
        }
        let count = replicas as usize;
        if canary.booted_at.len() == count {
            return Ok(false);
        }
        canary.booted_at.resize(count, ready_at);
        Ok(true)
    }

    /// The stable machines are replaced by machines of `revision`, booted one by one while the
    /// canary serves.
    async fn promote(&self, revision: &str) -> canary_core::Result<bool> {
        let ready_at = self.ready_at();
        let mut machines = self.machines();
        if machines.stable.revision == revision {
            return Ok(false);
        }
        let count = u32::try_from(machines.stable.booted_at.len()).unwrap_or(u32::MAX);
        machines.stable = Group::new(revision, count, ready_at);
        Ok(true)
    }

    async fn remove_canary(&self) -> canary_core::Result<bool> {
        Ok(self.machines().canary.take().is_some())
    }
}
