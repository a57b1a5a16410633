//! [`ServiceProxy`]: another client's (or the server's) service as
//! [`Client::get_service`] returns it, with typed calls; and typed wrappers of the
//! manager's `list_services` and `generate_token`.

use crate::{Client, RpcError};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use rhizo_protocol::value::{self, from_json, get_str, to_json};
use rmpv::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;
use std::time::Duration;

/// How long a call waits for a reply by default; every heartbeat of the callee restarts
/// the wait (hypha-rpc's default `method_timeout`).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A service found with [`Client::get_service`]: its description (the record with one
/// encoded method per function) and typed calls into it.
///
/// Arguments and results cross as JSON (through `serde_json::Value`).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use rhizo_client::{Client, ConnectOptions};
///
/// let client = Client::connect("http://127.0.0.1:9527", ConnectOptions::default()).await?;
/// let calc = client.get_service("ws-user-x/client-1:calc").await?;
/// let sum: i64 = calc.call("add", (2, 3)).await?;
/// let same: i64 = calc.call_kwargs("add", serde_json::json!({"a": 2, "b": 3})).await?;
/// assert_eq!(sum, same);
/// # Ok(())
/// # }
/// ```
pub struct ServiceProxy<'a> {
    client: &'a Client,
    info: Value,
    timeout: Duration,
}

impl Client {
    /// The service `id` — `"svc"` (of this workspace), `"client:svc"` or
    /// `"ws/client:svc"` — as a [`ServiceProxy`] (the manager's `get_service`).
    ///
    /// Errors: the manager's text ([`RpcError::Remote`], e.g. `KeyError: …` for a service
    /// that does not exist), or the connection's.
    pub async fn get_service(&self, id: &str) -> Result<ServiceProxy<'_>, RpcError> {
        let info = self.manager_call("get_service", vec![id.into()]).await?;
        if !info.is_map() {
            return Err(RpcError::Decode(format!(
                "get_service({id}) returned {info}, not a service"
            )));
        }
        Ok(ServiceProxy {
            client: self,
            info,
            timeout: DEFAULT_CALL_TIMEOUT,
        })
    }

    /// The services `query` matches (the manager's `list_services`, e.g. `{}` for this
    /// workspace's, or `{"workspace": "public"}`), each the record the manager keeps.
    pub async fn list_services(&self, query: Json) -> Result<Vec<Json>, RpcError> {
        let v = self
            .manager_call("list_services", vec![from_json(&query)])
            .await?;
        match to_json(&v) {
            Json::Array(a) => Ok(a),
            other => Err(RpcError::Decode(format!(
                "list_services returned {other}, not a list"
            ))),
        }
    }

    /// A token for `config` (the manager's `generate_token`, e.g.
    /// `{"workspace": "...", "permission": "read_write", "expires_in": 3600}`).
    pub async fn generate_token(&self, config: Json) -> Result<String, RpcError> {
        let v = self
            .manager_call("generate_token", vec![from_json(&config)])
            .await?;
        match v.as_str() {
            Some(t) => Ok(t.to_owned()),
            None => Err(RpcError::Decode(format!(
                "generate_token returned {v}, not a string"
            ))),
        }
    }
}

impl<'a> ServiceProxy<'a> {
    /// The full service id (`<ws>/<client>:<id>`).
    pub fn id(&self) -> &str {
        get_str(&self.info, "id").unwrap_or_default()
    }

    /// The description `get_service` returned, as JSON.
    pub fn info(&self) -> Json {
        to_json(&self.info)
    }

    /// The `_rschema` (`{name, description, parameters}`) of function `name` (a dotted
    /// path for nested ones), if it has one.
    pub fn schema(&self, name: &str) -> Option<Json> {
        value::get(self.method(name)?, "_rschema").map(to_json)
    }

    /// The same proxy with calls waiting at most `timeout` between the callee's
    /// heartbeats (default [`DEFAULT_CALL_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn method(&self, name: &str) -> Option<&Value> {
        let m = name
            .split('.')
            .try_fold(&self.info, |v, k| value::get(v, k))?;
        (get_str(m, "_rtype") == Some("method")).then_some(m)
    }

    /// Calls function `name` with positional `args`: a tuple (`(2, 3)`; `()` for none;
    /// `(vec![1, 2],)` for one list) or any other value, which is then the one argument.
    /// The reply decodes as an `R`.
    ///
    /// Errors: [`RpcError::NoSuchFunction`], [`RpcError::Remote`] with the callee's text,
    /// [`RpcError::Timeout`], [`RpcError::Disconnected`], [`RpcError::Decode`].
    pub async fn call<R: DeserializeOwned>(
        &self,
        name: &str,
        args: impl Serialize,
    ) -> Result<R, RpcError> {
        self.invoke(name, positional(&args)?, None).await
    }

    /// Calls function `name` with keyword arguments `kwargs` (a struct or a map, e.g.
    /// `json!({"a": 2, "b": 3})`), as a Python caller's `svc.add(a=2, b=3)`.
    ///
    /// Errors: those of [`ServiceProxy::call`], and [`RpcError::Encode`] when `kwargs` is
    /// not a map.
    pub async fn call_kwargs<R: DeserializeOwned>(
        &self,
        name: &str,
        kwargs: impl Serialize,
    ) -> Result<R, RpcError> {
        self.invoke(name, Vec::new(), Some(keywords(&kwargs)?))
            .await
    }

    /// Calls generator function `name` (a typed Rust generator, or a Python function that
    /// returns a generator) with positional `args` as [`ServiceProxy::call`] does, and
    /// iterates the remote generator it returns: each item decodes as a `T`. The stream
    /// ends after the last item or the first error; dropped before that, it sends the
    /// generator's `close` so the callee stops it.
    ///
    /// Errors (as items): those of [`ServiceProxy::call`]; [`RpcError::Decode`] when the
    /// reply is not a generator or an item is not a `T`.
    ///
    /// ```no_run
    /// # async fn run(proxy: rhizo_client::ServiceProxy<'_>) -> Result<(), rhizo_client::RpcError> {
    /// use futures_util::StreamExt;
    /// let mut counts = proxy.call_stream::<i64>("count", (3,)).await?;
    /// while let Some(n) = counts.next().await {
    ///     println!("{}", n?);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call_stream<T: DeserializeOwned + Send + 'a>(
        &self,
        name: &str,
        args: impl Serialize,
    ) -> Result<BoxStream<'a, Result<T, RpcError>>, RpcError> {
        let args = positional(&args)?;
        let v: Value = self.invoke_raw(name, args, None).await?;
        self.remote_generator(name, &v)
    }

    /// Like [`ServiceProxy::call_stream`], with keyword arguments as
    /// [`ServiceProxy::call_kwargs`] takes them.
    pub async fn call_stream_kwargs<T: DeserializeOwned + Send + 'a>(
        &self,
        name: &str,
        kwargs: impl Serialize,
    ) -> Result<BoxStream<'a, Result<T, RpcError>>, RpcError> {
        let kwargs = keywords(&kwargs)?;
        let v: Value = self.invoke_raw(name, Vec::new(), Some(kwargs)).await?;
        self.remote_generator(name, &v)
    }

    /// The stream of the remote generator `v` (`{_rtype: "generator", _rtarget,
    /// _rmethod, _rclose_method?}`) that function `name` returned.
    fn remote_generator<T: DeserializeOwned + Send + 'a>(
        &self,
        name: &str,
        v: &Value,
    ) -> Result<BoxStream<'a, Result<T, RpcError>>, RpcError> {
        let target = get_str(v, "_rtarget");
        let next = get_str(v, "_rmethod");
        let (Some("generator"), Some(target), Some(next)) = (get_str(v, "_rtype"), target, next)
        else {
            return Err(RpcError::Decode(format!(
                "`{name}` returned {v}, not a generator"
            )));
        };
        let remote = RemoteGenerator {
            client: self.client,
            target: target.to_owned(),
            next: next.to_owned(),
            close: get_str(v, "_rclose_method").map(str::to_owned),
            timeout: self.timeout,
            done: false,
        };
        Ok(futures_util::stream::unfold(remote, |mut g| async move {
            if g.done {
                return None;
            }
            let item = g
                .client
                .call_with(&g.target, &g.next, Vec::new(), None, g.timeout)
                .await;
            let item = match item {
                Ok(v) if get_str(&v, "_rtype") == Some("stop_iteration") => {
                    g.finish();
                    return None;
                }
                Ok(v) => {
                    serde_json::from_value(to_json(&v)).map_err(|e| RpcError::Decode(e.to_string()))
                }
                Err(e) => Err(e.into()),
            };
            // After an error the callee has ended (or lost) the generator.
            if item.is_err() {
                g.finish();
            }
            Some((item, g))
        })
        .boxed())
    }

    async fn invoke<R: DeserializeOwned>(
        &self,
        name: &str,
        args: Vec<Value>,
        kwargs: Option<Value>,
    ) -> Result<R, RpcError> {
        let v = self.invoke_raw(name, args, kwargs).await?;
        serde_json::from_value(to_json(&v)).map_err(|e| RpcError::Decode(e.to_string()))
    }

    async fn invoke_raw(
        &self,
        name: &str,
        args: Vec<Value>,
        kwargs: Option<Value>,
    ) -> Result<Value, RpcError> {
        let m = self
            .method(name)
            .ok_or_else(|| RpcError::NoSuchFunction(name.to_owned()))?;
        let (Some(target), Some(path)) = (get_str(m, "_rtarget"), get_str(m, "_rmethod")) else {
            return Err(RpcError::Decode(format!(
                "function `{name}` has no _rtarget/_rmethod"
            )));
        };
        Ok(self
            .client
            .call_with(target, path, args, kwargs, self.timeout)
            .await?)
    }
}

/// A consumed remote generator; sends its `close` when dropped before it ended.
struct RemoteGenerator<'a> {
    client: &'a Client,
    target: String,
    next: String,
    close: Option<String>,
    timeout: Duration,
    done: bool,
}

impl RemoteGenerator<'_> {
    /// The generator ended (or failed) on the callee's side: nothing to close.
    fn finish(&mut self) {
        self.done = true;
    }
}

impl Drop for RemoteGenerator<'_> {
    fn drop(&mut self) {
        if let (false, Some(close)) = (self.done, &self.close) {
            self.client.call_detached(&self.target, close, Vec::new());
        }
    }
}

/// Positional arguments: a tuple or list is the arguments, `()` none, anything else the one
/// argument.
fn positional(args: &impl Serialize) -> Result<Vec<Value>, RpcError> {
    Ok(match to_value(args)? {
        Json::Null => Vec::new(),
        Json::Array(a) => a.iter().map(from_json).collect(),
        v => vec![from_json(&v)],
    })
}

/// Keyword arguments: a struct or a map.
fn keywords(kwargs: &impl Serialize) -> Result<Value, RpcError> {
    match to_value(kwargs)? {
        v @ Json::Object(_) => Ok(from_json(&v)),
        other => Err(RpcError::Encode(format!(
            "keyword arguments must be a map, not {other}"
        ))),
    }
}

fn to_value(v: &impl Serialize) -> Result<Json, RpcError> {
    serde_json::to_value(v).map_err(|e| RpcError::Encode(e.to_string()))
}
