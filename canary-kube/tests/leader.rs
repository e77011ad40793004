//! Leader election against the in-memory Kubernetes API test server: take-over only after a
//! lease stayed unchanged on the candidate's own clock, a leader that stops acting at its renew
//! deadline, step-down, and lease values from the cluster that must not break the count.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use canary_core::engine::providers::ManualClock;
use canary_kube::leader::{LeaderElection, Lost, Timing};
use jiff::{SignedDuration, Timestamp};
use kube_testserver::ApiServer;
use serde_json::{Value, json};

const LEASE: &str = "canary-controller";
const DEADLINE: Duration = Duration::from_secs(2);

/// A 3 s lease, 2 s renew deadline, attempts 100 ms apart (real time).
fn timing() -> Timing {
    Timing::new(Duration::from_secs(3), DEADLINE, Duration::from_millis(100)).unwrap()
}

fn candidate(server: &ApiServer, lease: &str, who: &str) -> LeaderElection {
    LeaderElection::new(server.client(), "test", lease, who, Duration::from_secs(3))
        .with_timing(timing())
}

fn advance(clock: &ManualClock, seconds: i64) {
    clock.advance(SignedDuration::from_secs(seconds));
}

fn lease(server: &ApiServer, name: &str) -> Value {
    server
        .get("coordination.k8s.io/v1", "Lease", Some("test"), name)
        .unwrap()
}

fn put_lease(server: &ApiServer, name: &str, spec: Value) {
    server.put(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "test"},
        "spec": spec,
    }));
}

/// Work that never ends on its own and says when it was dropped.
fn guarded_work(dropped: &Arc<AtomicBool>) -> impl Future<Output = ()> + use<> {
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let flag = Flag(dropped.clone());
    async move {
        let _flag = flag;
        std::future::pending::<()>().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_whose_renewals_hang_stops_at_its_deadline_and_its_work_is_dropped() {
    let server = ApiServer::start().await.unwrap();
    let clock = ManualClock::new(Timestamp::now());
    let (a, b) = (
        candidate(&server, LEASE, "a"),
        candidate(&server, LEASE, "b"),
    );
    let term = a.acquire(&clock).await;
    assert!(!b.try_lead(&clock).await.unwrap(), "held by a");
    let dropped = Arc::new(AtomicBool::new(false));
    let leading = a.while_leading(&clock, term, guarded_work(&dropped));
    let stall = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        // A second later, a's renewals write a new renew time.
        advance(&clock, 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        server.faults().set_latency(Duration::from_secs(3600));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !dropped.load(Ordering::SeqCst),
            "a renewal hangs, but the deadline has not passed"
        );
        advance(&clock, 2);
        Instant::now()
    };
    let (lost, stalled) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(10), leading),
        stall
    );
    assert_eq!(
        lost.expect("the leader stopped"),
        Err(Lost::DeadlinePassed { deadline: DEADLINE })
    );
    assert!(
        stalled.elapsed() < Duration::from_secs(1),
        "stopped as the deadline passed on its clock, not on a hung call: {:?}",
        stalled.elapsed()
    );
    assert!(
        dropped.load(Ordering::SeqCst),
        "the guarded work was dropped"
    );
    server.faults().clear();
    // b sees that a renewed since its first look: it waits a full lease duration from now.
    assert!(
        !b.try_lead(&clock).await.unwrap(),
        "a renewed since b looked"
    );
    advance(&clock, 2);
    assert!(!b.try_lead(&clock).await.unwrap(), "unchanged for only 2 s");
    advance(&clock, 1);
    assert!(b.try_lead(&clock).await.unwrap(), "unchanged for 3 s");
    let taken = lease(&server, LEASE);
    assert_eq!(taken["spec"]["holderIdentity"], "b");
    assert_eq!(taken["spec"]["leaseTransitions"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_renewals_are_retried_until_the_deadline_then_the_leader_stops() {
    let server = ApiServer::start().await.unwrap();
    let clock = ManualClock::new(Timestamp::now());
    let a = candidate(&server, LEASE, "a");
    let term = a.acquire(&clock).await;
    let dropped = Arc::new(AtomicBool::new(false));
    let leading = a.while_leading(&clock, term, guarded_work(&dropped));
    let fail = async {
        server.faults().set_error_rate(1.0);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !dropped.load(Ordering::SeqCst),
            "failed renewals within the deadline are retried"
        );
        advance(&clock, 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !dropped.load(Ordering::SeqCst),
            "1 s is within the deadline"
        );
        advance(&clock, 1);
    };
    let (lost, ()) = tokio::join!(tokio::time::timeout(Duration::from_secs(10), leading), fail);
    assert_eq!(
        lost.expect("the leader stopped"),
        Err(Lost::DeadlinePassed { deadline: DEADLINE })
    );
    assert!(dropped.load(Ordering::SeqCst));
    let renewals = server
        .requests()
        .iter()
        .filter(|r| r.path.contains("/leases/") && r.verb.is_write())
        .count();
    assert!(renewals >= 3, "it kept trying: {renewals} writes");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_stops_at_its_next_renewal_once_another_holds_the_lease() {
    let server = ApiServer::start().await.unwrap();
    let clock = ManualClock::new(Timestamp::now());
    let a = candidate(&server, LEASE, "a");
    let term = a.acquire(&clock).await;
    let dropped = Arc::new(AtomicBool::new(false));
    let leading = a.while_leading(&clock, term, guarded_work(&dropped));
    let take = async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        put_lease(
            &server,
            LEASE,
            json!({"holderIdentity": "c", "leaseDurationSeconds": 3}),
        );
    };
    let (lost, ()) = tokio::join!(tokio::time::timeout(Duration::from_secs(1), leading), take);
    assert_eq!(
        lost.expect("stopped within a second"),
        Err(Lost::Taken {
            holder: Some("c".to_owned())
        })
    );
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_lease_is_judged_by_when_it_last_changed_never_by_its_renew_time() {
    let server = ApiServer::start().await.unwrap();
    let clock = ManualClock::new(Timestamp::now());
    // Written by a holder whose clock runs far ahead, or far behind.
    for (name, renewed) in [
        ("ahead", "2100-01-01T00:00:00.000000Z"),
        ("behind", "1990-01-01T00:00:00.000000Z"),
    ] {
        put_lease(
            &server,
            name,
            json!({"holderIdentity": "other", "leaseDurationSeconds": 15,
                   "acquireTime": renewed, "renewTime": renewed, "leaseTransitions": 4}),
        );
        let b = candidate(&server, name, "b");
        assert!(
            !b.try_lead(&clock).await.unwrap(),
            "{name}: first seen now, so held for 15 s from now"
        );
        advance(&clock, 14);
        assert!(!b.try_lead(&clock).await.unwrap(), "{name}: 14 s unchanged");
        advance(&clock, 1);
        assert!(b.try_lead(&clock).await.unwrap(), "{name}: 15 s unchanged");
        let taken = lease(&server, name);
        assert_eq!(taken["spec"]["holderIdentity"], "b");
        assert_eq!(taken["spec"]["leaseTransitions"], 5);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_holder_that_keeps_renewing_keeps_its_lease_whatever_its_clock_says() {
    let server = ApiServer::start().await.unwrap();
    let clock = ManualClock::new(Timestamp::now());
    let b = candidate(&server, LEASE, "b");
    for renewal in 0..10 {
        // A renewal from a clock 36 years behind: an old renew time, but a change.
        put_lease(
            &server,
            LEASE,
            json!({"holderIdentity": "other", "leaseDurationSeconds": 15,
                   "renewTime": format!("1990-01-01T00:00:{renewal:02}.000000Z")}),
        );
        assert!(
            !b.try_lead(&clock).await.unwrap(),
            "renewal {renewal}: it changed since b last looked"
        );
        advance(&clock, 10);
    }
    assert_eq!(lease(&server, LEASE)["spec"]["holderIdentity"], "other");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_transition_count_from_the_cluster_saturates() {
    let server = ApiServer::start().await.unwrap();
    let clock = ManualClock::new(Timestamp::now());
    put_lease(
        &server,
        LEASE,
        json!({"leaseDurationSeconds": 15, "leaseTransitions": i32::MAX}),
    );
    let b = candidate(&server, LEASE, "b");
    assert!(b.try_lead(&clock).await.unwrap(), "a free lease is taken");
    let taken = lease(&server, LEASE);
    assert_eq!(taken["spec"]["holderIdentity"], "b");
    assert_eq!(taken["spec"]["leaseTransitions"], i32::MAX);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_that_steps_down_hands_over_at_once() {
    let server = ApiServer::start().await.unwrap();
    let clock = ManualClock::new(Timestamp::now());
    let (a, b) = (
        candidate(&server, LEASE, "a"),
        candidate(&server, LEASE, "b"),
    );
    a.acquire(&clock).await;
    let step_down = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        a.step_down().await.unwrap();
    };
    let (acquired, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(2), b.acquire(&clock)),
        step_down
    );
    acquired.expect("b took the released lease without waiting for it to expire");
    assert_eq!(lease(&server, LEASE)["spec"]["holderIdentity"], "b");
    assert!(!a.try_lead(&clock).await.unwrap(), "b holds it now");
}

#[tokio::test(flavor = "multi_thread")]
async fn work_that_ends_while_the_lease_is_kept_gives_its_output() {
    let server = ApiServer::start().await.unwrap();
    let clock = ManualClock::new(Timestamp::now());
    let a = candidate(&server, LEASE, "a");
    let term = a.acquire(&clock).await;
    let work = async {
        tokio::time::sleep(Duration::from_millis(350)).await;
        42
    };
    assert_eq!(a.while_leading(&clock, term, work).await, Ok(42));
    assert_eq!(lease(&server, LEASE)["spec"]["holderIdentity"], "a");
}
