//! Rendering: the seed's lane group and lanes, a chain of Rollouts sharing them, weighted
//! ingress, and what lanes cannot express.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use canary_asm::{Released, release, render};
use canary_core::k8s::objects::Objects;
use canary_core::{RolloutPlan, RouteState};
use serde_json::{Value, json};

fn example(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../examples/rollouts/{name}-asm.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn plan(name: &str) -> RolloutPlan {
    canary_core::api::load::plan_from_yaml(&example(name)).unwrap()
}

/// The canary lane route of a plan's first step (the lane header).
fn routed(plan: &RolloutPlan) -> RouteState {
    plan.steps[0].route.clone()
}

/// What the cluster holds after `plan` applied `route` over `objects`.
fn apply(plan: &RolloutPlan, route: &RouteState, objects: &Objects) -> Objects {
    let rendered = render(plan, route, objects).unwrap();
    let mut next = objects.clone();
    next.extend(rendered.objects());
    next
}

fn names(objects: &Objects, lane: &str) -> Vec<String> {
    let kind = if lane == "rollout" {
        "ASMSwimLaneGroup"
    } else {
        "ASMSwimLane"
    };
    objects.get(kind, "", lane).unwrap()["spec"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn mocka_renders_the_seeds_lane_group_and_lanes() {
    let mocka = plan("mocka");
    let rendered = render(&mocka, &routed(&mocka), &Objects::default()).unwrap();
    let group = &rendered.group;
    assert_eq!(group["apiVersion"], "istio.alibabacloud.com/v1");
    assert_eq!(group["metadata"]["name"], "rollout");
    assert!(
        group["metadata"].get("namespace").is_none(),
        "cluster-scoped"
    );
    assert_eq!(
        group["spec"]["ingress"]["gateway"],
        json!({"name": "ingressgateway", "namespace": "istio-system", "type": "ASM"})
    );
    assert_eq!(
        group["spec"]["ingress"]["ingressRouting"]["ingressRoutingStrategy"],
        "rule_based"
    );
    assert_eq!(group["spec"]["isPermissive"], true);
    assert_eq!(
        group["spec"]["permissiveModeConfiguration"],
        json!({"fallbackTarget": "base", "routeHeader": "x-asm-prefer-tag", "traceHeader": "my-request-id"})
    );
    for (lane, tag) in [(&rendered.base, "base"), (&rendered.canary, "canary")] {
        assert_eq!(lane["kind"], "ASMSwimLane");
        assert_eq!(lane["metadata"]["name"], tag);
        assert_eq!(lane["metadata"]["labels"]["swimlane-group"], "rollout");
        assert_eq!(
            lane["spec"]["labelSelector"],
            json!({"ASM_TRAFFIC_TAG": tag})
        );
        // The base lane admits every request for the entry (users who name no lane); the
        // canary lane those naming it.
        let matched = if tag == "base" {
            json!({"uri": {"exact": "/mock"}})
        } else {
            json!({"headers": {"x-asm-prefer-tag": {"exact": tag}}, "uri": {"exact": "/mock"}})
        };
        assert_eq!(
            lane["spec"]["ingressRules"],
            json!([{
                "name": tag, "online": true, "hosts": ["*"],
                "match": matched,
                "route": {"destination": {"host": "mocka.default.svc.cluster.local"}},
            }])
        );
        assert_eq!(
            lane["spec"]["services"],
            json!([{"name": "mocka", "namespace": "default"}])
        );
    }
}

#[test]
fn the_chain_joins_and_leaves_the_canary_lane_service_by_service() {
    let [mocka, mockb, mockc] = ["mocka", "mockb", "mockc"].map(plan);
    // Every Rollout registers its service; none routes to a canary yet.
    let mut cluster = Objects::default();
    for plan in [&mocka, &mockb, &mockc] {
        cluster = apply(plan, &RouteState::stable(), &cluster);
    }
    assert_eq!(names(&cluster, "rollout"), ["mocka", "mockb", "mockc"]);
    assert_eq!(names(&cluster, "base"), ["mocka", "mockb", "mockc"]);
    assert!(names(&cluster, "canary").is_empty());
    let online = |objects: &Objects| {
        objects.get("ASMSwimLane", "", "canary").unwrap()["spec"]["ingressRules"][0]["online"]
            .clone()
    };
    assert_eq!(
        online(&cluster),
        false,
        "an empty canary lane takes no ingress traffic"
    );

    // mocka's canary alone.
    cluster = apply(&mocka, &routed(&mocka), &cluster);
    assert_eq!(names(&cluster, "canary"), ["mocka"]);
    assert_eq!(online(&cluster), true);
    // All three.
    cluster = apply(&mockb, &routed(&mockb), &cluster);
    cluster = apply(&mockc, &routed(&mockc), &cluster);
    assert_eq!(names(&cluster, "canary"), ["mocka", "mockb", "mockc"]);
    // mockb approved (all traffic back on its stable, now v2): it leaves the lane.
    cluster = apply(&mockb, &RouteState::stable(), &cluster);
    assert_eq!(names(&cluster, "canary"), ["mocka", "mockc"]);
    assert_eq!(names(&cluster, "base"), ["mocka", "mockb", "mockc"]);
    // mocka undone.
    cluster = apply(&mocka, &RouteState::stable(), &cluster);
    assert_eq!(names(&cluster, "canary"), ["mockc"]);
    assert_eq!(online(&cluster), true, "mockc still uses it");

    // Rollouts deleted one by one: the lanes stay while any uses them.
    let Released::Kept(kept) = release(&mocka, &cluster).unwrap() else {
        panic!("mockb and mockc remain")
    };
    cluster.extend(kept.objects());
    assert_eq!(names(&cluster, "rollout"), ["mockb", "mockc"]);
    let Released::Kept(kept) = release(&mockc, &cluster).unwrap() else {
        panic!("mockb remains")
    };
    cluster.extend(kept.objects());
    assert!(names(&cluster, "canary").is_empty());
    assert_eq!(online(&cluster), false);
    assert_eq!(release(&mockb, &cluster).unwrap(), Released::Deleted);
}

#[test]
fn lanes_canary_did_not_create_outlive_the_last_rollout() {
    let mocka = plan("mocka");
    let created = apply(&mocka, &routed(&mocka), &Objects::default());
    assert_eq!(release(&mocka, &created).unwrap(), Released::Deleted);
    // The same lanes and group, kept in Git by the user (no managed-by label of canary's).
    let theirs = Objects::new(
        created
            .iter()
            .map(|object| {
                let mut object = object.clone();
                if let Some(labels) = object["metadata"]["labels"].as_object_mut() {
                    labels.remove("app.kubernetes.io/managed-by");
                }
                object
            })
            .collect(),
    );
    let Released::Kept(kept) = release(&mocka, &theirs).unwrap() else {
        panic!("the user's lanes must stay")
    };
    assert_eq!(kept.group["spec"]["services"], json!([]));
    assert_eq!(kept.base["spec"]["services"], json!([]));
    assert_eq!(kept.canary["spec"]["services"], json!([]));
}

#[test]
fn entries_and_settings_written_by_others_are_kept() {
    let [mocka, mockb] = ["mocka", "mockb"].map(plan);
    let mut cluster = apply(&mocka, &routed(&mocka), &Objects::default());
    // A service entry with a cluster reference, as ASM's console writes it, stays as it is.
    let mut group = cluster
        .get("ASMSwimLaneGroup", "", "rollout")
        .unwrap()
        .clone();
    group["spec"]["services"][0]["cluster"] = json!({"id": "c1", "name": "test"});
    group["spec"]["autoUpdate"] = json!(true);
    cluster.insert(group);
    cluster = apply(&mockb, &routed(&mockb), &cluster);
    let group = cluster.get("ASMSwimLaneGroup", "", "rollout").unwrap();
    assert_eq!(group["spec"]["services"][0]["cluster"]["id"], "c1");
    assert_eq!(group["spec"]["autoUpdate"], true);
    // mockb is not the entry: the ingress rules stay mocka's.
    let canary = cluster.get("ASMSwimLane", "", "canary").unwrap();
    assert_eq!(
        canary["spec"]["ingressRules"][0]["route"]["destination"]["host"],
        "mocka.default.svc.cluster.local"
    );
}

#[test]
fn a_rollout_that_disagrees_with_the_group_is_refused() {
    let mocka = plan("mocka");
    let cluster = apply(&mocka, &routed(&mocka), &Objects::default());
    let other = canary_core::api::load::plan_from_yaml(
        &example("mockb").replace("traceHeader: my-request-id", "traceHeader: x-b3-traceid"),
    )
    .unwrap();
    let error = render(&other, &routed(&other), &cluster)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("permissiveModeConfiguration") && error.contains("must agree"),
        "{error}"
    );
}

#[test]
fn weighted_lanes_give_the_canary_lane_the_entrys_weight() {
    let text = example("mocka")
        .replace("      ingress: {uri: {exact: /mock}}", "      ingress: {uri: {exact: /mock}}\n      mode: weighted")
        .replace("      - matches:\n        - headers: {x-asm-prefer-tag: {exact: canary}}\n        pause: {}", "      - {weight: 20, pause: {}}");
    let mocka = canary_core::api::load::plan_from_yaml(&text).unwrap();
    let rendered = render(&mocka, &RouteState::weighted(20), &Objects::default()).unwrap();
    assert_eq!(
        rendered.group["spec"]["ingress"]["ingressRouting"]["ingressRoutingStrategy"],
        "weighted"
    );
    assert_eq!(
        rendered.group["spec"]["ingress"]["ingressRouting"]["weightedRoutingRule"],
        json!({"hosts": ["*"], "requestMatches": [{"uri": {"exact": "/mock"}}]})
    );
    let weight = |lane: &Value| lane["spec"]["ingressWeight"]["weight"].as_u64().unwrap();
    assert_eq!((weight(&rendered.base), weight(&rendered.canary)), (80, 20));
    assert_eq!(
        rendered.canary["spec"]["ingressWeight"]["destination"]["host"],
        "mocka.default.svc.cluster.local"
    );
    assert!(rendered.canary["spec"].get("ingressRules").is_none());
}

#[test]
fn lanes_refuse_matches_other_than_the_lane_header_and_a_foreign_lane_tag() {
    let errors = |text: String| match canary_core::api::load::plan_from_yaml(&text) {
        Err(canary_core::Error::Invalid(errors)) => {
            errors.0.iter().map(ToString::to_string).collect::<Vec<_>>()
        }
        other => panic!("accepted: {other:?}"),
    };
    let other_header = example("mockb").replace(
        "{x-asm-prefer-tag: {exact: canary}}",
        "{x-user: {exact: insider}}",
    );
    let e = errors(other_header);
    assert!(
        e.iter()
            .any(|e| e.contains("steps[0].matches[0]") && e.contains("route header")),
        "{e:?}"
    );
    let wrong_tag = example("mockb").replace(
        "labels: {ASM_TRAFFIC_TAG: canary}",
        "labels: {ASM_TRAFFIC_TAG: base}",
    );
    let e = errors(wrong_tag);
    assert!(
        e.iter()
            .any(|e| e.contains("podTemplateMetadata.labels.ASM_TRAFFIC_TAG")),
        "{e:?}"
    );
}

/// An `ASMSwimLane` named `name` in lane group `group`, selecting `tag`, listing `services`.
fn lane(name: &str, group: Option<&str>, tag: &str, services: Value) -> Value {
    let mut lane = json!({
        "apiVersion": "istio.alibabacloud.com/v1", "kind": "ASMSwimLane",
        "metadata": {"name": name},
        "spec": {"labelSelector": {"ASM_TRAFFIC_TAG": tag}, "services": services},
    });
    if let Some(group) = group {
        lane["metadata"]["labels"] = json!({"swimlane-group": group});
    }
    lane
}

#[test]
fn lanes_of_another_group_are_never_taken_over() {
    let mocka = plan("mocka");
    let theirs = json!([{"name": "cart", "namespace": "shop"}]);
    for (foreign, words) in [
        (
            lane("canary", Some("shop"), "canary", theirs.clone()),
            "belongs to lane group shop",
        ),
        (
            lane("base", None, "base", theirs.clone()),
            "belongs to no lane group",
        ),
        (
            lane("canary", Some("rollout"), "gray", theirs.clone()),
            "selects pods by",
        ),
    ] {
        let objects = Objects::new(vec![foreign.clone()]);
        for route in [routed(&mocka), RouteState::stable()] {
            let error = render(&mocka, &route, &objects).unwrap_err();
            assert!(
                matches!(error, canary_asm::Error::Conflict(_))
                    && error.to_string().contains(words),
                "{error}"
            );
        }
        // Leaving (the Rollout deleted) leaves another group's lane as it is.
        match release(&mocka, &objects).unwrap() {
            Released::Deleted => {}
            Released::Kept(kept) => panic!("nothing of ours to keep: {kept:?}"),
        }
    }
    // A chain whose lane of that name another group holds by now: the Rollout that leaves
    // keeps it as it is.
    let mut cluster = apply(&mocka, &RouteState::stable(), &Objects::default());
    cluster = apply(&plan("mockb"), &RouteState::stable(), &cluster);
    cluster.insert(lane("canary", Some("shop"), "canary", theirs.clone()));
    let Released::Kept(kept) = release(&plan("mockb"), &cluster).unwrap() else {
        panic!("mocka remains")
    };
    assert_eq!(
        &kept.canary,
        cluster.get("ASMSwimLane", "", "canary").unwrap()
    );
    assert_eq!(
        kept.group["spec"]["services"],
        json!([{"name": "mocka", "namespace": "default"}])
    );
}

/// The seed's stable Deployment of `service`, its pods labelled `labels`.
fn stable(service: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("{service}-v1"), "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": service}},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "default"}]}}},
    })
}

#[test]
fn stable_pods_must_be_in_the_base_lane_before_the_service_joins() {
    let mocka = plan("mocka");
    for (labels, has) in [
        (json!({"app": "mocka"}), "no ASM_TRAFFIC_TAG label"),
        (
            json!({"app": "mocka", "ASM_TRAFFIC_TAG": "canary"}),
            "ASM_TRAFFIC_TAG: canary",
        ),
    ] {
        let objects = Objects::new(vec![stable("mocka", labels.clone())]);
        for route in [routed(&mocka), RouteState::stable()] {
            let error = render(&mocka, &route, &objects).unwrap_err().to_string();
            assert!(
                error.contains(has) && error.contains("add the label ASM_TRAFFIC_TAG: base"),
                "{error}"
            );
        }
        // Already in the lanes (its pods lost the tag since): leaving the canary lane is never
        // refused, joining it is.
        let mut cluster = apply(&mocka, &routed(&mocka), &Objects::default());
        cluster.insert(stable("mocka", labels));
        let left = render(&mocka, &RouteState::stable(), &cluster).unwrap();
        assert!(
            left.canary["spec"]["services"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert!(render(&mocka, &routed(&mocka), &cluster).is_err());
    }
    let tagged = Objects::new(vec![stable(
        "mocka",
        json!({"app": "mocka", "version": "v1", "ASM_TRAFFIC_TAG": "base"}),
    )]);
    assert!(render(&mocka, &routed(&mocka), &tagged).is_ok());
}

#[test]
fn the_chains_example_objects_have_their_stable_pods_in_the_base_lane() {
    let path = format!(
        "{}/../examples/rollouts/asm-chain-objects.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(&std::fs::read_to_string(path).unwrap()).unwrap();
    let objects = Objects::new(documents);
    for name in ["mocka", "mockb", "mockc"] {
        let plan = plan(name);
        assert!(
            objects
                .get("Deployment", "default", &format!("{name}-v1"))
                .is_some()
        );
        render(&plan, &routed(&plan), &objects).unwrap();
    }
}

/// Every copy of `object` with one node (each in turn, the whole object too) replaced by a
/// value of another shape: what a user's file or a custom resource with an open schema may
/// hold.
fn broken_copies(object: &Value) -> Vec<Value> {
    fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let key = key.replace('~', "~0").replace('/', "~1");
                    pointers(child, format!("{at}/{key}"), out);
                }
            }
            Value::Array(list) => {
                for (index, child) in list.iter().enumerate() {
                    pointers(child, format!("{at}/{index}"), out);
                }
            }
            _ => {}
        }
        out.push(at);
    }
    let mut all = Vec::new();
    pointers(object, String::new(), &mut all);
    let wrong = [
        json!("text"),
        json!(u64::MAX),
        json!(-1),
        json!([1, "x"]),
        json!({"x": 1}),
        Value::Null,
    ];
    let mut out = Vec::new();
    for pointer in &all {
        for value in &wrong {
            let mut copy = object.clone();
            if let Some(node) = copy.pointer_mut(pointer)
                && node != value
            {
                *node = value.clone();
                out.push(copy);
            }
        }
    }
    out
}

/// Runs `f` (whatever it answers), failing the test with `what` when it panics.
fn no_panic<T>(what: &Value, f: impl FnOnce() -> T) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        panic!("panicked on {what:#}");
    }
}

#[test]
fn lanes_of_the_wrong_shape_are_refused_by_name_and_field_never_a_panic() {
    let [mocka, mockb] = ["mocka", "mockb"].map(plan);
    // What the cluster holds once mockb joined: the group and both lanes, made by canary.
    let live = apply(&mockb, &routed(&mockb), &Objects::default());
    let mut lanes: Vec<Value> = live.iter().cloned().collect();
    lanes.push(lane(
        "canary",
        Some("rollout"),
        "canary",
        json!([{"name": "cart"}]),
    ));
    // The case that once panicked: a lane whose ingress rules hold a string.
    let mut broken = live.clone();
    let mut canary_lane = live.get("ASMSwimLane", "", "canary").unwrap().clone();
    canary_lane["spec"]["ingressRules"] = json!(["rule"]);
    broken.insert(canary_lane);
    let error = render(&mocka, &routed(&mocka), &broken)
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "ASMSwimLane canary: spec.ingressRules is a list with an item that is not a mapping; \
         it must be a list of mappings"
    );
    let mut group = live.get("ASMSwimLaneGroup", "", "rollout").unwrap().clone();
    group["spec"]["ingress"] = json!("gateway");
    let mut broken = live.clone();
    broken.insert(group);
    let error = release(&mockb, &broken).unwrap_err().to_string();
    assert!(
        error.starts_with("ASMSwimLaneGroup rollout: spec.ingress is a string"),
        "{error}"
    );
    for object in lanes {
        for broken in broken_copies(&object) {
            let mut objects = live.clone();
            objects.insert(broken.clone());
            for (plan, route) in [
                (&mocka, routed(&mocka)),
                (&mocka, RouteState::stable()),
                (&mockb, RouteState::weighted(30)),
            ] {
                no_panic(&broken, || render(plan, &route, &objects));
            }
            no_panic(&broken, || release(&mockb, &objects));
            no_panic(&broken, || {
                canary_asm::render::observed_route(&mockb, Some(&broken))
            });
        }
    }
}
