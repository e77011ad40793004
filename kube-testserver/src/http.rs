//! The HTTP/1 server: accept loop, request classification, fault injection, the
//! request log, and turning handler replies into responses.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

use super::errors::{ApiError, ApiResult};
use super::handlers::{self, Call, Reply};
use super::requests::{LoggedRequest, Verb};
use super::routes::{self, Route};
use super::store::lock;
use super::{State, discovery, wait_shutdown};

/// Response body type: a full JSON document or a watch stream.
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Accepts connections until shutdown.
pub(crate) async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut shutdown = state.shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, Arc::clone(&state)));
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            },
            () = wait_shutdown(&mut shutdown) => return,
        }
    }
}

async fn connection(stream: TcpStream, state: Arc<State>) {
    let mut shutdown = state.shutdown.clone();
    let service = service_fn(move |req| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(respond(state, req).await) }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = wait_shutdown(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn classify(method: &Method, route: &Route, watch: bool) -> Verb {
    let target = match route {
        Route::Object(t) => Some(t),
        _ => None,
    };
    match *method {
        Method::POST => Verb::Create,
        Method::PUT => Verb::Update,
        Method::PATCH => Verb::Patch,
        Method::DELETE => Verb::Delete,
        _ => match target {
            Some(t) if t.name.is_none() && watch => Verb::Watch,
            Some(t) if t.name.is_none() => Verb::List,
            _ => Verb::Get,
        },
    }
}

fn json_response(code: u16, value: &Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())).boxed_unsync());
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error_response(err: &ApiError) -> Response<Body> {
    json_response(err.code, &err.to_status())
}

async fn respond(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let latency = state.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = routes::parse_query(req.uri().query());
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let content_type = header(CONTENT_TYPE);
    let user_agent = header(USER_AGENT);
    // apiserver: `Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1` asks
    // for the objects' metadata only (a metadata informer's request).
    let metadata_only = header(ACCEPT).contains("as=PartialObjectMetadata");
    let route = routes::parse(&state.registry, &path);
    let watch = query.get("watch").is_some_and(|v| v == "true" || v == "1");
    let verb = classify(&method, &route, watch);

    let result = match req.into_body().collect().await {
        Ok(collected) => {
            let body = collected.to_bytes();
            dispatch(
                &state,
                verb,
                &route,
                &query,
                &content_type,
                &user_agent,
                &body,
            )
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "failed to read the request body: {e}"
        ))),
    };
    let response = match result {
        Ok(Reply::Json(code, value)) if metadata_only && matches!(verb, Verb::Get | Verb::List) => {
            json_response(code, &partial(value))
        }
        Ok(Reply::Json(code, value)) => json_response(code, &value),
        Ok(Reply::Warned(code, value, warnings)) => {
            let mut resp = json_response(code, &value);
            for warning in warnings {
                // RFC 7234 warn-code 299 with the text quoted, as the API server sends it.
                let text = format!("299 - {:?}", warning);
                if let Ok(v) = HeaderValue::from_str(&text) {
                    resp.headers_mut().append("warning", v);
                }
            }
            resp
        }
        Ok(Reply::Stream(body)) => {
            let mut resp = Response::new(body);
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(err) => error_response(&err),
    };
    lock(&state.log).push(LoggedRequest {
        verb,
        method: method.to_string(),
        path,
        status: response.status().as_u16(),
        metadata_only,
    });
    response
}

/// An object, or a list of them, as `PartialObjectMetadata`: only their metadata.
fn partial(value: Value) -> Value {
    let one = |object: &Value| {
        serde_json::json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": object["metadata"],
        })
    };
    match value["items"].as_array() {
        Some(items) => serde_json::json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadataList",
            "metadata": value["metadata"],
            "items": items.iter().map(one).collect::<Vec<_>>(),
        }),
        None if value["kind"] == "Status" => value,
        None => one(&value),
    }
}

fn dispatch(
    state: &Arc<State>,
    verb: Verb,
    route: &Route,
    query: &std::collections::HashMap<String, String>,
    content_type: &str,
    user_agent: &str,
    body: &[u8],
) -> ApiResult<Reply> {
    let read_only = |value: Value| {
        if verb == Verb::Get {
            Ok(Reply::Json(200, value))
        } else {
            Err(not_allowed())
        }
    };
    match route {
        Route::Version => read_only(discovery::version()),
        Route::CoreVersions => read_only(discovery::core_versions(&state.addr)),
        Route::Groups => read_only(discovery::groups(&state.registry)),
        Route::Resources { group, version } => {
            read_only(discovery::resources(&state.registry, group, version))
        }
        Route::Unknown => Err(ApiError::no_route()),
        Route::Object(target) => {
            if verb.is_write() {
                if state.faults.roll_conflict() {
                    return Err(ApiError::conflict(
                        "Operation cannot be fulfilled: injected conflict (test server fault)",
                    ));
                }
                if state.faults.count_write() || state.faults.roll_error() {
                    return Err(ApiError::internal(
                        "injected internal error (test server fault)",
                    ));
                }
            }
            let agent = user_agent
                .split('/')
                .next()
                .filter(|a| !a.is_empty())
                .unwrap_or("unknown");
            let manager = query.get("fieldManager").map_or(agent, String::as_str);
            let call = Call {
                verb,
                target,
                query,
                content_type,
                manager,
                body,
            };
            handlers::handle(state, &call)
        }
    }
}

fn not_allowed() -> ApiError {
    ApiError::method_not_allowed("the server does not allow this method on the requested resource")
}
