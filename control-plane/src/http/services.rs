//! Calling services over plain HTTP (workspace-api.md §8.1–8.3):
//! `GET /{ws}/services/` lists, `GET /{ws}/services/{id}` describes, and
//! `GET|POST /{ws}/services/{id}/{function}` calls a function with the query parameters or
//! the JSON / msgpack body as keyword arguments. The caller is identified by
//! `Authorization: Bearer`, the `access_token` cookie or `?token=`; anonymous callers act
//! as `anonymouz-http` from `ws-anonymous`.

use super::{anonymous_http_user, request_token};
use crate::error::{ApiError, ManagerError};
use crate::manager::{Ctx, Manager};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use rhizo_protocol::value;
use rmpv::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Query names the route itself uses; never passed on as arguments.
const RESERVED: [&str; 5] = ["workspace", "service_id", "function_key", "_mode", "token"];

pub(super) fn routes() -> axum::Router<Arc<Manager>> {
    axum::Router::new()
        .route(
            "/{ws}/services",
            get(|| async { Redirect::temporary("services/") }),
        )
        .route("/{ws}/services/", get(list))
        .route("/{ws}/info", get(workspace_info))
        .route("/{ws}/services/{service_id}", get(info))
        .route(
            "/{ws}/services/{service_id}/{*function_key}",
            get(call_get).post(call_post),
        )
        .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
}

/// The caller's context for an HTTP request to workspace `ws`, from the token of
/// `Authorization: Bearer …`, the `access_token` cookie or the `token` query parameter
/// (anonymous without one; workspace-api.md §1.7). Errors: 401 when the token does not
/// verify.
pub fn caller(
    m: &Manager,
    headers: &HeaderMap,
    query: &BTreeMap<String, String>,
    ws: &str,
) -> Result<Ctx, ApiError> {
    let token = request_token(headers).or_else(|| query.get("token").cloned());
    let user = match token {
        None => anonymous_http_user(),
        Some(t) => m.tokens.verify(&t)?,
    };
    Ok(m.http_ctx(user, ws))
}

fn wants_msgpack(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/msgpack")
        })
}

/// The result as JSON, or msgpack when the request was msgpack (§8.2).
fn encode(result: &Value, msgpack: bool) -> Response {
    if msgpack {
        (
            [(header::CONTENT_TYPE, "application/msgpack")],
            value::encode(result),
        )
            .into_response()
    } else {
        axum::Json(value::to_json(result)).into_response()
    }
}

async fn list(
    State(m): State<Arc<Manager>>,
    Path(ws): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ctx = caller(&m, &headers, &q, &ws)?;
    let list = m.http_list_services(&ctx, &ws).map_err(ApiError::listing)?;
    Ok(encode(&list, false))
}

/// `GET /{ws}/info`: the workspace record; needs read permission on it (403), 404 if it
/// does not exist.
async fn workspace_info(
    State(m): State<Arc<Manager>>,
    Path(ws): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ctx = caller(&m, &headers, &q, &ws)?;
    ctx.require(&ws, rhizo_protocol::user::Permission::Read)?;
    let info = m.workspaces.get(&ws).ok_or_else(|| {
        ManagerError::NotFound(format!(
            "Workspace {ws} does not exist or is not accessible"
        ))
    })?;
    Ok(axum::Json(serde_json::to_value(info).unwrap_or_default()).into_response())
}

async fn info(
    State(m): State<Arc<Manager>>,
    Path((ws, service_id)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ctx = caller(&m, &headers, &q, &ws)?;
    let info = m
        .http_service_info(&ctx, &ws, &service_id, q.get("_mode").map(String::as_str))
        .map_err(ApiError::listing)?;
    Ok(encode(&info, false))
}

/// A call's answer: the value itself, or, for a generator, its items as they come
/// (§8.2): `text/event-stream` with `data: <json>` per item and a final `data: [DONE]`, or
/// concatenated msgpack objects. An error while streaming becomes an item
/// `{"error": …, "traceback": ""}`.
fn respond(m: Arc<Manager>, ctx: Ctx, result: Value, msgpack: bool) -> Response {
    if value::get_str(&result, "_rtype") != Some("generator") {
        return encode(&result, msgpack);
    }
    let items = futures_util::stream::unfold(Some((m, ctx, result)), move |state| async move {
        let (m, ctx, generator) = state?;
        let (item, next) = match m
            .http_invoke(
                &ctx,
                &generator,
                Vec::new(),
                crate::manager::HTTP_CALL_TIMEOUT,
            )
            .await
        {
            Ok(v) if value::get_str(&v, "_rtype") == Some("stop_iteration") => {
                if msgpack {
                    return None;
                }
                (b"data: [DONE]\n\n".to_vec(), None)
            }
            Ok(v) => (stream_item(&v, msgpack), Some((m, ctx, generator))),
            Err(e) => {
                let err = value::map([("error", e.wire().into()), ("traceback", "".into())]);
                (stream_item(&err, msgpack), None)
            }
        };
        Some((Ok::<_, std::io::Error>(Bytes::from(item)), next))
    });
    let content_type = if msgpack {
        "application/msgpack"
    } else {
        "text/event-stream"
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(items),
    )
        .into_response()
}

fn stream_item(v: &Value, msgpack: bool) -> Vec<u8> {
    if msgpack {
        value::encode(v)
    } else {
        format!("data: {}\n\n", value::to_json(v)).into_bytes()
    }
}

/// A query value as the reference reads it: integers and floats as numbers, `{…}` as
/// JSON, anything else as a string.
fn query_value(v: &str) -> Value {
    if let Ok(i) = v.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(f) = v.parse::<f64>() {
        if f.is_finite() {
            return Value::F64(f);
        }
    }
    if v.starts_with('{') {
        if let Ok(j) = serde_json::from_str::<serde_json::Value>(v) {
            return value::from_json(&j);
        }
    }
    Value::from(v)
}

async fn call_get(
    State(m): State<Arc<Manager>>,
    Path((ws, service_id, function_key)): Path<(String, String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ctx = caller(&m, &headers, &q, &ws)?;
    let kwargs = Value::Map(
        q.iter()
            .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
            .map(|(k, v)| (Value::from(k.as_str()), query_value(v)))
            .collect(),
    );
    let r = m
        .http_call(
            &ctx,
            &ws,
            &service_id,
            &function_key,
            kwargs,
            q.get("_mode").map(String::as_str),
        )
        .await?;
    Ok(respond(m, ctx, r, wants_msgpack(&headers)))
}

/// Keyword arguments from a POST body: an object as is, an array as `"0"`, `"1"`, …, a
/// scalar as `"0"` (§8.2); reserved names removed.
fn body_kwargs(body: Value) -> Value {
    let entries = match body {
        Value::Nil => Vec::new(),
        Value::Map(m) => m
            .into_iter()
            .filter(|(k, _)| !k.as_str().is_some_and(|k| RESERVED.contains(&k)))
            .collect(),
        Value::Array(a) => a
            .into_iter()
            .enumerate()
            .map(|(i, v)| (Value::from(i.to_string()), v))
            .collect(),
        other => vec![(Value::from("0"), other)],
    };
    Value::Map(entries)
}

async fn call_post(
    State(m): State<Arc<Manager>>,
    Path((ws, service_id, function_key)): Path<(String, String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ctx = caller(&m, &headers, &q, &ws)?;
    let msgpack = wants_msgpack(&headers);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let decoded = if body.is_empty() {
        Value::Nil
    } else if msgpack {
        rmpv::decode::read_value(&mut &body[..]).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("Invalid msgpack body: {e}"),
            )
        })?
    } else if mime == "application/json" || mime.is_empty() {
        let j: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("Invalid JSON body: {e}"))
        })?;
        value::from_json(&j)
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Invalid content-type: {content_type}; use application/json or application/msgpack"
            ),
        ));
    };
    let r = m
        .http_call(
            &ctx,
            &ws,
            &service_id,
            &function_key,
            body_kwargs(decoded),
            q.get("_mode").map(String::as_str),
        )
        .await?;
    Ok(respond(m, ctx, r, msgpack))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_body_arguments() {
        assert_eq!(query_value("2"), Value::from(2));
        assert_eq!(query_value("2.5"), Value::F64(2.5));
        assert_eq!(query_value("abc"), Value::from("abc"));
        assert_eq!(value::get_str(&query_value(r#"{"a":"b"}"#), "a"), Some("b"));
        let kw = body_kwargs(Value::Array(vec![1.into(), 2.into()]));
        assert_eq!(value::get(&kw, "1"), Some(&Value::from(2)));
        let kw = body_kwargs(value::map([("a", 1.into()), ("_mode", "x".into())]));
        assert_eq!(kw.as_map().unwrap().len(), 1);
    }
}
