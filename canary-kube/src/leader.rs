//! Leader election on a `coordination.k8s.io` Lease, so several controller replicas can run
//! and exactly one of them acts.

use std::time::Duration;

use canary_core::providers::Clock;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::error::Result;

/// One candidate for the lease `name`.
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaderElection {
    /// `identity` (e.g. the pod name) competes for lease `name` in `namespace`; a leader that
    /// has not renewed for `duration` loses it.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        LeaderElection {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    /// How often a leader renews: a third of the lease.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    /// Takes or renews the lease; true while this candidate leads. A lost race is a `false`,
    /// not an error.
    pub async fn try_lead(&self, clock: &dyn Clock) -> Result<bool> {
        let now = MicroTime(clock.now());
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return won(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let held_for = spec.lease_duration_seconds.map_or(self.duration, |s| {
            Duration::from_secs(u64::try_from(s).unwrap_or(0))
        });
        let expired = match (&spec.holder_identity, &spec.renew_time) {
            (Some(_), Some(renewed)) => {
                let age = now.0.duration_since(renewed.0);
                age.unsigned_abs() > held_for && age.is_positive()
            }
            _ => true,
        };
        if !mine && !expired {
            return Ok(false);
        }
        if !mine {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(seconds);
        // `replace` carries the resourceVersion read above: a concurrent change is a conflict.
        won(self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await)
    }

    /// Gives the lease up (on shutdown), if held.
    pub async fn step_down(&self) -> Result<()> {
        if let Some(mut lease) = self.api.get_opt(&self.name).await?
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = None;
            won(self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await)?;
        }
        Ok(())
    }
}

/// A write that may lose a race: a conflict or an existing object means someone else won.
fn won(result: std::result::Result<Lease, kube::Error>) -> Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error.into()),
    }
}
