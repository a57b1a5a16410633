//! Remote generators this client serves (protocol.md §4.3; hypha-rpc's `_rtype:
//! "generator"`): a handler returns the value [`Client::generator`] makes from a stream, and
//! the caller's hypha-rpc turns it into an async iterator that calls `next` until it gets
//! `{_rtype: "stop_iteration"}`, or `close` when it stops early.
//!
//! Both methods (`gen-<id>.next`, `gen-<id>.close`) are exposed to the one caller the
//! generator was made for ([`rhizo_protocol::peer::LocalServices::expose`]); anyone else
//! is refused. They are withdrawn when the stream ends, on `close`, and after
//! [`GENERATOR_IDLE`] without a `next` (a caller that went away).

use crate::{handler, random_id, Client, Handler, Shared};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use rhizo_protocol::value::map;
use rmpv::Value;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Mutex as AsyncMutex;

/// A generator nobody asked for its next item for this long is dropped.
pub const GENERATOR_IDLE: Duration = Duration::from_secs(600);

/// The item that ends a remote generator.
fn stop_iteration() -> Value {
    map([("_rtype", "stop_iteration".into())])
}

/// One served generator: its stream (taken when it ends or closes) and a wake-up for the
/// idle watch.
struct Served {
    stream: AsyncMutex<Option<BoxStream<'static, Result<Value, String>>>>,
    touched: tokio::sync::Notify,
}

// === impl Client (generators) ===

impl Client {
    /// Serves `items` as a remote generator to `caller` (`ws/cid`, the `from` of the call
    /// whose handler returns it) and returns the encoded generator to return from that
    /// handler: `{_rtype: "generator", _rserver, _rtarget: <this client>, _rmethod:
    /// "gen-<id>.next", _rclose_method: "gen-<id>.close", _rpromise: "*", _rdoc}`.
    pub fn generator(&self, caller: &str, items: BoxStream<'static, Value>) -> Value {
        GeneratorHost::of(self).serve(caller, items.map(Ok).boxed())
    }

    /// How many generator methods are exposed now (two per live generator).
    pub fn generators_exposed(&self) -> usize {
        self.shared.objects.lock().expect("objects lock").len()
    }
}

/// What serving a generator needs of a [`Client`], detached from its lifetime (a typed
/// generator function's handler keeps one).
#[derive(Clone)]
pub(crate) struct GeneratorHost {
    shared: Weak<Shared>,
    /// This client's `ws/cid` (`_rtarget`).
    addr: String,
    /// `_rserver`.
    server: String,
}

impl GeneratorHost {
    pub(crate) fn of(client: &Client) -> Self {
        GeneratorHost {
            shared: Arc::downgrade(&client.shared),
            addr: format!("{}/{}", client.workspace(), client.client_id()),
            server: client.info["public_base_url"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        }
    }

    /// Serves `items` to `caller` (see [`Client::generator`]); an `Err` item rejects that
    /// `next` call with its text (the caller's iteration raises it) and ends the stream.
    pub(crate) fn serve(
        &self,
        caller: &str,
        items: BoxStream<'static, Result<Value, String>>,
    ) -> Value {
        let id = format!("gen-{}", random_id());
        let (next, close) = (format!("{id}.next"), format!("{id}.close"));
        let served = Arc::new(Served {
            stream: AsyncMutex::new(Some(items)),
            touched: tokio::sync::Notify::new(),
        });
        let weak = self.shared.clone();
        let Some(shared) = self.shared.upgrade() else {
            return stop_iteration();
        };
        let next_handler: Handler = {
            let (served, weak, paths) =
                (served.clone(), weak.clone(), [next.clone(), close.clone()]);
            handler(move |_call| {
                let (served, weak, paths) = (served.clone(), weak.clone(), paths.clone());
                async move {
                    served.touched.notify_one();
                    let mut stream = served.stream.lock().await;
                    let item = match stream.as_mut() {
                        Some(s) => s.next().await,
                        None => None,
                    };
                    match item {
                        Some(Ok(v)) => Ok(v),
                        Some(Err(e)) => {
                            *stream = None;
                            withdraw(&weak, &paths);
                            Err(e)
                        }
                        None => {
                            *stream = None;
                            withdraw(&weak, &paths);
                            Ok(stop_iteration())
                        }
                    }
                }
            })
        };
        let close_handler: Handler = {
            let (served, weak, paths) =
                (served.clone(), weak.clone(), [next.clone(), close.clone()]);
            handler(move |_call| {
                let (served, weak, paths) = (served.clone(), weak.clone(), paths.clone());
                async move {
                    served.stream.lock().await.take();
                    withdraw(&weak, &paths);
                    Ok(Value::Boolean(true))
                }
            })
        };
        {
            let mut st = shared.lock();
            st.peer.services_mut().expose(next.clone(), caller);
            st.peer.services_mut().expose(close.clone(), caller);
        }
        {
            let mut objects = shared.objects.lock().expect("objects lock");
            objects.insert(next.clone(), next_handler);
            objects.insert(close.clone(), close_handler);
        }
        tokio::spawn(watch_idle(served, weak, [next.clone(), close.clone()]));
        map([
            ("_rtype", "generator".into()),
            ("_rserver", self.server.as_str().into()),
            ("_rtarget", self.addr.as_str().into()),
            ("_rmethod", next.into()),
            ("_rclose_method", close.into()),
            ("_rpromise", "*".into()),
            ("_rdoc", "Remote generator".into()),
        ])
    }
}

/// Withdraws a generator's methods from the peer and forgets their handlers.
fn withdraw(shared: &Weak<Shared>, paths: &[String; 2]) {
    let Some(shared) = shared.upgrade() else {
        return;
    };
    {
        let mut st = shared.lock();
        for p in paths {
            st.peer.services_mut().withdraw(p);
        }
    }
    let mut objects = shared.objects.lock().expect("objects lock");
    for p in paths {
        objects.remove(p);
    }
}

/// Drops the generator after [`GENERATOR_IDLE`] without a call, or once it is withdrawn.
async fn watch_idle(served: Arc<Served>, shared: Weak<Shared>, paths: [String; 2]) {
    loop {
        let idle = tokio::time::timeout(GENERATOR_IDLE, served.touched.notified())
            .await
            .is_err();
        let gone = shared.upgrade().is_none_or(|s| {
            !s.objects
                .lock()
                .expect("objects lock")
                .contains_key(&paths[0])
        });
        if gone {
            return;
        }
        if idle {
            served.stream.lock().await.take();
            withdraw(&shared, &paths);
            return;
        }
    }
}
