//! The admission webhook over real TLS: reviews posted as the API server posts them, answered
//! from the Rollouts of the in-memory API test server; the HTTP hardening (body cap, methods,
//! unreadable bodies); certificates renewed on disk; a graceful stop.
#![cfg(all(feature = "test-util", feature = "webhook"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use canary_kube::crd::Rollout;
use canary_kube::webhook::{BODY_LIMIT, HOLD_PATH, Timeouts, WebhookServer, review};
use canary_kube::workload::STABLE_REVISION;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject};
use kube_testserver::{ApiServer, ResourceType};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

const UID: &str = "b0e4a9a6-8d6f-4c55-9b7e-2b0f7f3c1d42";

/// A directory of its own under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "canary-webhook-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes, with the `openssl` CLI, a CA (`{prefix}ca.pem`) and a certificate it signs for
/// `localhost` and `127.0.0.1` (`{prefix}tls.crt`, ECDSA P-256 key in PKCS#8
/// `{prefix}tls.key`), valid for two days.
fn issue(dir: &Path, prefix: &str) {
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the tests need the openssl CLI (Debian: apt-get install openssl)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let file = |name: &str| format!("{prefix}{name}");
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-nodes",
            "-keyout",
            &file("ca.key"),
            "-out",
            &file("ca.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=canary webhook test CA {prefix}"),
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-nodes",
            "-keyout",
            &file("tls.key"),
            "-out",
            &file("tls.csr"),
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join(file("san.ext")),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &file("tls.csr"),
        "-CA",
        &file("ca.pem"),
        "-CAkey",
        &file("ca.key"),
        "-CAcreateserial",
        "-out",
        &file("tls.crt"),
        "-days",
        "2",
        "-extfile",
        &file("san.ext"),
    ]);
}

/// An HTTPS client that trusts only the CA in `ca` (PEM) and resolves `localhost` to
/// `address`.
fn client(ca: &Path, address: SocketAddr) -> reqwest::Client {
    let certificates = reqwest::Certificate::from_pem_bundle(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only(certificates)
        .resolve("localhost", address)
        .build()
        .unwrap()
}

/// The API test server with Rollouts, and the webhook serving them over TLS.
struct Setup {
    /// Kept running for the webhook's lists.
    _api: ApiServer,
    dir: TempDir,
    address: SocketAddr,
    http: reqwest::Client,
    stop: watch::Sender<bool>,
    served: tokio::task::JoinHandle<()>,
}

impl Setup {
    async fn start(name: &str) -> Self {
        Self::start_with(name, None, Timeouts::default()).await
    }

    /// As [`Setup::start`], the webhook listing Rollouts through `rollouts` when given, with
    /// `timeouts`.
    async fn start_with(name: &str, rollouts: Option<kube::Client>, timeouts: Timeouts) -> Self {
        let api = ApiServer::start().await.unwrap();
        api.register(ResourceType::new(
            "canary.rs",
            "v1alpha1",
            "Rollout",
            "rollouts",
            true,
            true,
        ));
        // The Rollout of `web` in `shop` with its stable revision recorded, one in another
        // namespace, one in `shop` of another Deployment.
        api.put(rollout("shop", "web", "web", Some("5d8f7c")));
        api.put(rollout("other", "web", "web", Some("0a0a0a")));
        api.put(rollout("shop", "api", "api", None));
        let dir = TempDir::new(name);
        issue(&dir.0, "");
        let server = WebhookServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            &dir.0.join("tls.crt"),
            &dir.0.join("tls.key"),
        )
        .await
        .unwrap()
        .with_timeouts(timeouts);
        let address = server.local_addr().unwrap();
        let (stop, mut stopped) = watch::channel(false);
        let rollouts = rollouts.unwrap_or_else(|| api.client());
        let served = tokio::spawn(server.serve(Arc::new(rollouts), async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        }));
        let http = client(&dir.0.join("ca.pem"), address);
        Setup {
            _api: api,
            dir,
            address,
            http,
            stop,
            served,
        }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}{HOLD_PATH}", self.address.port())
    }

    async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, String) {
        let response = self
            .http
            .post(self.url())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let code = response.status().as_u16();
        (code, response.text().await.unwrap())
    }

    /// Posts a review and returns its `response`, checking the envelope and the uid.
    async fn review(&self, request: &Value) -> Value {
        let (code, text) = self.post(request.to_string()).await;
        assert_eq!(code, 200, "{text}");
        let review: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(review["kind"], "AdmissionReview");
        let response = review["response"].clone();
        assert_eq!(response["uid"], UID, "the request's uid is echoed");
        assert_eq!(response["allowed"], true, "{response}");
        response
    }
}

fn rollout(namespace: &str, name: &str, target: &str, stable: Option<&str>) -> Value {
    let mut rollout = json!({
        "apiVersion": "canary.rs/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "service": {"name": target, "port": 80},
            "trafficRouting": {"kuma": {}},
            "strategy": {"canary": {"steps": [{"weight": 50}]}},
        },
    });
    if let Some(stable) = stable {
        rollout["status"] = json!({"phase": "Succeeded", "stableRevision": stable});
    }
    rollout
}

fn deployment(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "uid": "7d3c", "resourceVersion": "41",
                     "labels": {"app": name}, "annotations": {"team": "checkout"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": name, "image": image}]}}
        },
        "status": {"replicas": 3, "readyReplicas": 3}
    })
}

/// An `AdmissionReview` as the API server sends it for `operation` on `object`.
fn admission(operation: &str, kind: (&str, &str, &str), old: &Value, new: &Value) -> Value {
    let (group, kind, resource) = kind;
    let name = new["metadata"]["name"]
        .as_str()
        .or(old["metadata"]["name"].as_str())
        .unwrap_or_default();
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "requestKind": {"group": group, "version": "v1", "kind": kind},
            "requestResource": {"group": group, "version": "v1", "resource": resource},
            "name": name, "namespace": "shop", "operation": operation,
            "userInfo": {"username": "system:serviceaccount:flux-system:kustomize-controller",
                         "groups": ["system:serviceaccounts"]},
            "object": new, "oldObject": old, "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions",
                        "fieldManager": "kustomize-controller"},
        }
    })
}

const DEPLOYMENT: (&str, &str, &str) = ("apps", "Deployment", "deployments");

/// Standard base64 decoding, for the `patch` field.
fn unbase64(text: &str) -> Vec<u8> {
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bits: String = text
        .trim_end_matches('=')
        .chars()
        .map(|c| format!("{:06b}", alphabet.find(c).expect("base64")))
        .collect();
    bits.as_bytes()
        .chunks_exact(8)
        .map(|byte| u8::from_str_radix(std::str::from_utf8(byte).unwrap(), 2).unwrap())
        .collect()
}

/// `object` with the response's JSON Patch applied, as the API server applies it.
fn patched(object: &Value, response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    let patch: json_patch::Patch =
        serde_json::from_slice(&unbase64(response["patch"].as_str().unwrap())).unwrap();
    let mut object = object.clone();
    json_patch::patch(&mut object, &patch).unwrap();
    object
}

fn assert_unchanged(response: &Value) {
    assert!(response.get("patch").is_none(), "{response}");
    assert!(response.get("patchType").is_none(), "{response}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_template_from_git_is_held_in_the_same_request() {
    let setup = Setup::start("held").await;
    let (old, new) = (deployment("web", "web:1"), deployment("web", "web:2"));
    let response = setup
        .review(&admission("UPDATE", DEPLOYMENT, &old, &new))
        .await;
    let held = patched(&new, &response);
    assert_eq!(held["spec"]["paused"], true);
    assert_eq!(
        held["metadata"]["annotations"][STABLE_REVISION], "5d8f7c",
        "held at the revision the Rollout of its own namespace records"
    );
    assert_eq!(held["metadata"]["annotations"]["team"], "checkout");
    assert_eq!(held["spec"]["template"], new["spec"]["template"]);
    // Without annotations, the patch makes the map first.
    let mut bare = new.clone();
    bare["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    let response = setup
        .review(&admission("UPDATE", DEPLOYMENT, &old, &bare))
        .await;
    let held = patched(&bare, &response);
    assert_eq!(
        held["metadata"]["annotations"],
        json!({STABLE_REVISION: "5d8f7c"})
    );
    assert_eq!(held["spec"]["paused"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_other_write_is_allowed_unchanged() {
    let setup = Setup::start("unchanged").await;
    let old = deployment("web", "web:1");
    let mut relabelled = old.clone();
    relabelled["metadata"]["labels"]["tier"] = json!("front");
    relabelled["spec"]["replicas"] = json!(5);
    let service_old = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    });
    let mut service_new = service_old.clone();
    service_new["spec"]["selector"]["app"] = json!("web2");
    let cases = [
        (
            "a label and replica change",
            admission("UPDATE", DEPLOYMENT, &old, &relabelled),
        ),
        (
            "a Deployment no Rollout targets",
            admission(
                "UPDATE",
                DEPLOYMENT,
                &deployment("cart", "cart:1"),
                &deployment("cart", "cart:2"),
            ),
        ),
        (
            "a Deployment whose Rollout has recorded no stable revision",
            admission(
                "UPDATE",
                DEPLOYMENT,
                &deployment("api", "api:1"),
                &deployment("api", "api:2"),
            ),
        ),
        (
            "a CREATE",
            admission(
                "CREATE",
                DEPLOYMENT,
                &Value::Null,
                &deployment("web", "web:2"),
            ),
        ),
        (
            "a non-Deployment",
            admission(
                "UPDATE",
                ("", "Service", "services"),
                &service_old,
                &service_new,
            ),
        ),
    ];
    for (case, request) in &cases {
        let response = setup.review(request).await;
        assert!(response.get("patch").is_none(), "{case}: {response}");
        assert_unchanged(&response);
    }
    // An already held Deployment (canary's own writes carry the annotation) stays as written.
    let mut held = deployment("web", "web:3");
    held["metadata"]["annotations"][STABLE_REVISION] = json!("5d8f7c");
    held["spec"]["paused"] = json!(true);
    let response = setup
        .review(&admission("UPDATE", DEPLOYMENT, &old, &held))
        .await;
    assert_unchanged(&response);
}

#[tokio::test(flavor = "multi_thread")]
async fn rollouts_that_cannot_be_listed_let_the_write_through() {
    // An API server nothing listens on.
    let nowhere = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
    let nowhere = Some(kube::Client::try_from(nowhere).unwrap());
    let setup = Setup::start_with("unlisted", nowhere, Timeouts::default()).await;
    let (old, new) = (deployment("web", "web:1"), deployment("web", "web:2"));
    let response = setup
        .review(&admission("UPDATE", DEPLOYMENT, &old, &new))
        .await;
    assert_unchanged(&response);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_without_echoing_them() {
    let setup = Setup::start("refused").await;
    let (code, text) = setup.post("{\"token\": \"s3cr3t-in-the-body\"").await;
    assert_eq!(code, 400);
    assert!(!text.contains("s3cr3t"), "{text}");
    let (code, text) = setup
        .post(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "note": "s3cr3t"}).to_string())
        .await;
    assert_eq!(code, 400, "a review without a request");
    assert!(!text.contains("s3cr3t"), "{text}");
    // Over the cap: 413, read to its end so that the client gets the answer.
    let (code, text) = setup.post(vec![b' '; BODY_LIMIT + 1]).await;
    assert_eq!(code, 413, "{text}");
    let (code, _) = setup.post(vec![b' '; BODY_LIMIT + 1024 * 1024]).await;
    assert_eq!(code, 413);
    // Just under the cap, a valid review of a big Deployment is answered.
    let (old, mut new) = (deployment("web", "web:1"), deployment("web", "web:2"));
    new["metadata"]["annotations"]["padding"] = json!("x".repeat(BODY_LIMIT / 2 - 64 * 1024));
    let response = setup
        .review(&admission("UPDATE", DEPLOYMENT, &old, &new))
        .await;
    assert_eq!(patched(&new, &response)["spec"]["paused"], true);
    let response = setup.http.get(setup.url()).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let elsewhere = format!("https://localhost:{}/mutate", setup.address.port());
    let response = setup.http.post(elsewhere).body("{}").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    // Every answer came over a connection the server kept serving.
    let (old, new) = (deployment("web", "web:1"), deployment("web", "web:2"));
    setup
        .review(&admission("UPDATE", DEPLOYMENT, &old, &new))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewed_certificate_is_served_to_new_connections() {
    let setup = Setup::start("renewed").await;
    let (old, new) = (deployment("web", "web:1"), deployment("web", "web:2"));
    let request = admission("UPDATE", DEPLOYMENT, &old, &new).to_string();
    // cert-manager renews with a new key (and, self-signed, a new CA).
    issue(&setup.dir.0, "renewed-");
    for file in ["tls.crt", "tls.key"] {
        std::fs::rename(
            setup.dir.0.join(format!("renewed-{file}")),
            setup.dir.0.join(file),
        )
        .unwrap();
    }
    let renewed = client(&setup.dir.0.join("renewed-ca.pem"), setup.address);
    let answer = renewed
        .post(setup.url())
        .body(request.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let stale = client(&setup.dir.0.join("ca.pem"), setup.address);
    assert!(
        stale
            .post(setup.url())
            .body(request.clone())
            .send()
            .await
            .is_err(),
        "the old certificate is no longer served"
    );
    // Files that cannot be used (a key that is not PEM) leave the last good certificate.
    std::fs::write(setup.dir.0.join("tls.key"), "not a key").unwrap();
    let answer = client(&setup.dir.0.join("renewed-ca.pem"), setup.address)
        .post(setup.url())
        .body(request)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_fails_on_unusable_files_and_serve_stops_on_shutdown() {
    let dir = TempDir::new("unusable");
    issue(&dir.0, "");
    let any = "127.0.0.1:0".parse().unwrap();
    let missing = WebhookServer::bind(any, &dir.0.join("absent.crt"), &dir.0.join("tls.key"))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, canary_kube::Error::Webhook { .. }),
        "{missing}"
    );
    assert!(missing.to_string().contains("absent.crt"), "{missing}");
    // A key that is not the certificate's.
    let other = WebhookServer::bind(any, &dir.0.join("tls.crt"), &dir.0.join("ca.key"))
        .await
        .unwrap_err();
    assert!(
        matches!(other, canary_kube::Error::Webhook { .. }),
        "{other}"
    );
    let setup = Setup::start("stopped").await;
    let url = setup.url();
    setup.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), setup.served)
        .await
        .expect("serve returns once shut down")
        .unwrap();
    let refused = setup.http.post(url).body("{}").send().await;
    assert!(refused.is_err(), "nothing listens after the stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_handler_reads_rollouts_from_the_api_server_without_tls() {
    let api = ApiServer::start().await.unwrap();
    let (old, new) = (deployment("web", "web:1"), deployment("web", "web:2"));
    let body = admission("UPDATE", DEPLOYMENT, &old, &new).to_string();
    let client = api.client();
    // No Rollout resource served yet: the list fails (404), the write goes through.
    let answer: Value =
        serde_json::from_slice(&review(&client, body.as_bytes()).await.unwrap()).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert_unchanged(&answer["response"]);
    api.register(ResourceType::new(
        "canary.rs",
        "v1alpha1",
        "Rollout",
        "rollouts",
        true,
        true,
    ));
    api.put(rollout("shop", "web", "web", Some("5d8f7c")));
    let answer: Value =
        serde_json::from_slice(&review(&client, body.as_bytes()).await.unwrap()).unwrap();
    let held = patched(&new, &answer["response"]);
    assert_eq!(held["metadata"]["annotations"][STABLE_REVISION], "5d8f7c");
    // A Rollout being deleted holds nothing.
    let mut deleting = rollout("shop", "web", "web", Some("5d8f7c"));
    deleting["metadata"]["finalizers"] = json!(["canary.rs/cleanup"]);
    api.put(deleting);
    let resource = ApiResource::erase::<Rollout>(&());
    Api::<DynamicObject>::namespaced_with(client.clone(), "shop", &resource)
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    let stored = api
        .get("canary.rs/v1alpha1", "Rollout", Some("shop"), "web")
        .unwrap();
    assert!(
        stored["metadata"]["deletionTimestamp"].is_string(),
        "{stored}"
    );
    let answer: Value =
        serde_json::from_slice(&review(&client, body.as_bytes()).await.unwrap()).unwrap();
    assert_unchanged(&answer["response"]);
}

/// A TLS connection to the webhook, trusting the CA in `ca`, with no request sent yet.
async fn connect(ca: &Path, address: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(address).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// Everything the server sends until it closes the connection (an error ends it too), or
/// `None` when it is still open after five seconds.
async fn until_closed(stream: &mut (impl AsyncRead + Unpin)) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buffer = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buffer).await {
            received.extend_from_slice(&buffer[..n]);
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&received).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off() {
    let short = Duration::from_millis(300);
    let timeouts = Timeouts {
        handshake: short,
        head: short,
        body: short,
    };
    let setup = Setup::start_with("slow", None, timeouts).await;
    let ca = setup.dir.0.join("ca.pem");
    // A body that does not come: 408, and the connection closed.
    let mut stalled = connect(&ca, setup.address).await;
    stalled
        .write_all(b"POST /hold HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    let answer = until_closed(&mut stalled).await.expect("closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // A request head that does not come (an idle connection): closed without an answer.
    let mut idle = connect(&ca, setup.address).await;
    assert_eq!(until_closed(&mut idle).await.as_deref(), Some(""));
    // A head sent slower than the timeout: closed before it ends.
    let mut slow = connect(&ca, setup.address).await;
    slow.write_all(b"POST /hold HTTP/1.1\r\n").await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if slow.write_all(b"x-drip: 1\r\n").await.is_err() {
            break;
        }
    }
    assert_eq!(until_closed(&mut slow).await.as_deref(), Some(""));
    // A TLS handshake that does not come: closed.
    let mut plain = TcpStream::connect(setup.address).await.unwrap();
    assert_eq!(until_closed(&mut plain).await.as_deref(), Some(""));
    // A prompt client is served.
    let (old, new) = (deployment("web", "web:1"), deployment("web", "web:2"));
    setup
        .review(&admission("UPDATE", DEPLOYMENT, &old, &new))
        .await;
}
