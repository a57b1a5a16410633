//! The manager's driver of the sans-IO [`RpcPeer`] (protocol.md §3.4–§3.7): the one place
//! that keeps the manager's outgoing calls, their timeouts and heartbeats, and the
//! heartbeats and replies of the calls it answers.
//!
//! The peer sits behind a std `Mutex` that is never held across an `.await`: every input
//! (a call, a frame, a response, a timeout) and the draining of the outputs it produced
//! happen in one lock-hold, so each caller gets back exactly the frames and events its own
//! input made and sends them itself (large frames go through `message_cache`, which needs
//! to know whose frame it is). One timer task sleeps until [`RpcPeer::poll_timeout`] and
//! feeds [`RpcPeer::handle_timeout`]; every input wakes it to re-read the deadline.

use crate::error::{ManagerError, ManagerResult};
use rhizo_interface::RouterControl;
use rhizo_protocol::message::{Call, Message};
use rhizo_protocol::peer::{
    CallError, CallRequest, IncomingId, PeerConfig, PeerEvent, Role, RpcPeer, Transmit,
};
use rmpv::Value;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{oneshot, Notify};

/// What an outgoing call's waiter receives.
pub(crate) type Outcome = Result<Value, CallError>;

/// The waiter stored with each outgoing call in the peer.
type Waiter = oneshot::Sender<Outcome>;

/// The peer and its timer.
#[derive(Debug)]
pub(crate) struct Driver {
    peer: Mutex<RpcPeer<Waiter>>,
    /// Wakes the timer task to re-read the next deadline.
    wake: Notify,
}

/// An incoming call the peer handed over, to be run and answered with
/// [`Driver::respond`].
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) id: IncomingId,
    pub(crate) call: Box<Call>,
}

/// Cancels an outgoing call in the peer if its waiter goes away before the reply (the
/// caller's future was dropped, e.g. an HTTP request that ended).
#[derive(Debug)]
pub(crate) struct CallGuard {
    driver: Arc<Driver>,
    session: String,
    reply: Option<oneshot::Receiver<Outcome>>,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

// === impl Driver ===

impl Driver {
    /// A driver for the manager at `addr` (`"*/<manager_id>"`), announcing `server_url` in
    /// the methods it encodes. Session ids start with `session_prefix`.
    pub(crate) fn new(addr: &str, server_url: &str, session_prefix: String) -> Arc<Self> {
        let peer = RpcPeer::new(PeerConfig {
            addr: addr.to_owned(),
            server_url: server_url.to_owned(),
            role: Role::Manager,
            session_prefix,
        });
        Arc::new(Driver {
            peer: Mutex::new(peer),
            wake: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, RpcPeer<Waiter>> {
        // A panic while holding the lock leaves the peer's maps consistent (every method
        // finishes its bookkeeping before it can panic), so a poisoned lock is used as is.
        self.peer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `input` on the peer and drains what it produced, in one lock-hold. Completed
    /// calls are handed to their waiters here; the frames to send and the incoming calls
    /// to run are returned.
    fn apply<T>(
        &self,
        input: impl FnOnce(&mut RpcPeer<Waiter>, Instant) -> T,
    ) -> (T, Vec<Transmit>, Vec<Incoming>) {
        let (out, transmits, events) = {
            let mut peer = self.lock();
            let out = input(&mut peer, now());
            let mut transmits = Vec::new();
            while let Some(t) = peer.poll_transmit() {
                transmits.push(t);
            }
            let mut events = Vec::new();
            while let Some(e) = peer.poll_event() {
                events.push(e);
            }
            (out, transmits, events)
        };
        self.wake.notify_one();
        let mut incoming = Vec::new();
        for e in events {
            match e {
                PeerEvent::CallCompleted { waiter, result, .. } => {
                    let _ = waiter.send(result);
                }
                PeerEvent::IncomingCall { id, call } => incoming.push(Incoming { id, call }),
                PeerEvent::Refused {
                    from,
                    method,
                    reason,
                } => {
                    tracing::info!(caller = %from, %method, %reason, "manager call refused unrun");
                }
                PeerEvent::Other(_) => {}
            }
        }
        (out, transmits, incoming)
    }

    /// Starts an outgoing call. Returns its guard (await it with [`CallGuard::wait`]) and
    /// the call frame to send.
    pub(crate) fn call(self: &Arc<Self>, req: CallRequest) -> (CallGuard, Transmit) {
        let (tx, rx) = oneshot::channel();
        let (session, mut transmits, _) = self.apply(|p, now| p.call(now, req, tx));
        let frame = transmits
            .pop()
            .expect("RpcPeer::call queues exactly one frame");
        let guard = CallGuard {
            driver: self.clone(),
            session,
            reply: Some(rx),
        };
        (guard, frame)
    }

    /// Feeds a decoded frame addressed to the manager. Replies complete their calls;
    /// heartbeats extend them; calls come back to be run.
    pub(crate) fn handle_message(&self, m: Message) -> (Vec<Transmit>, Vec<Incoming>) {
        let ((), transmits, incoming) = self.apply(|p, now| p.handle_message(now, m));
        (transmits, incoming)
    }

    /// Answers an incoming call; returns its reply frame (none for fire-and-forget calls,
    /// or a call already forgotten because its caller left).
    pub(crate) fn respond(&self, id: IncomingId, result: Result<Value, String>) -> Vec<Transmit> {
        self.apply(|p, _| p.respond(id, result)).1
    }

    /// Whether `session` is one of the manager's outgoing calls still waiting.
    pub(crate) fn is_pending(&self, session: &str) -> bool {
        self.lock().is_pending(session)
    }

    /// Pushes the deadline of the outgoing call `session` out by its timeout (a
    /// `message_cache` chunk keyed by that session arrived, §4.2). False if no such call
    /// is waiting.
    pub(crate) fn extend(&self, session: &str) -> bool {
        self.apply(|p, now| p.extend(now, session)).0
    }

    /// The client at `addr` is gone: its calls from the manager fail with
    /// [`ManagerError::Disconnected`], and the calls it made are forgotten.
    pub(crate) fn fail_calls_to(&self, addr: &str) {
        let reason = format!("Client disconnected: {addr}");
        self.apply(|p, _| p.fail_calls_to(addr, &reason));
    }

    /// Outgoing calls waiting for a reply.
    #[cfg(test)]
    pub(crate) fn pending_count(&self) -> usize {
        self.lock().pending_count()
    }

    /// Runs the peer's timers for the manager's lifetime: times out calls and sends the
    /// heartbeats of long incoming calls through `router`. Ends when the driver is
    /// dropped.
    pub(crate) fn spawn_timer(self: &Arc<Self>, router: Arc<dyn RouterControl>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no tokio runtime: the manager's call timers are not running");
            return;
        };
        let weak = Arc::downgrade(self);
        rt.spawn(async move {
            loop {
                let Some(driver) = weak.upgrade() else { return };
                let next = driver.lock().poll_timeout();
                let wait = async {
                    match next {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = wait => {
                        let ((), transmits, _) = driver.apply(|p, now| p.handle_timeout(now));
                        for t in transmits {
                            router.deliver(&t.to, t.frame.into());
                        }
                    }
                    _ = driver.wake.notified() => {}
                    // Re-check now and then that the manager still exists.
                    _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
                }
            }
        });
    }
}

// === impl CallGuard ===

impl CallGuard {
    /// The session id of the call.
    #[cfg(test)]
    pub(crate) fn session(&self) -> &str {
        &self.session
    }

    /// Waits for the call's outcome.
    ///
    /// Errors: the callee's reject ([`ManagerError::Remote`]), the timeout passing without
    /// a reply or heartbeat ([`ManagerError::Timeout`]), the callee leaving
    /// ([`ManagerError::Disconnected`]).
    pub(crate) async fn wait(mut self) -> ManagerResult<Value> {
        let rx = self.reply.take().expect("waited once");
        let outcome = rx.await;
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(call_error(e)),
            Err(_) => Err(ManagerError::Disconnected(
                "the manager's call was dropped".into(),
            )),
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        // Still waiting (not completed): the caller gave up; forget the call.
        if self.reply.is_some() {
            self.driver.lock().cancel(&self.session);
        }
    }
}

/// The manager's error for an outgoing call that failed.
fn call_error(e: CallError) -> ManagerError {
    match e {
        CallError::Rejected(text) => ManagerError::Remote(text),
        CallError::Timeout {
            to,
            method,
            timeout,
        } => ManagerError::Timeout(format!(
            "Method call timed out: {method} on {to} ({}s)",
            timeout.as_secs_f64()
        )),
        CallError::Failed(reason) => ManagerError::Disconnected(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhizo_protocol::message::encode_frame;
    use rhizo_protocol::value::{self, map};
    use std::time::Duration;

    fn driver() -> Arc<Driver> {
        Driver::new("*/manager-t", "http://h", "mgrtest".into())
    }

    fn reply_frame(from: &str, session: &str, kind: &str, arg: Value) -> Message {
        let header = map([
            ("type", "method".into()),
            ("from", from.into()),
            ("to", "*/manager-t".into()),
            ("method", format!("{session}.{kind}").into()),
        ]);
        let extra = map([("args", Value::Array(vec![arg]))]);
        Message::decode(&encode_frame(&header, Some(&extra))).unwrap()
    }

    #[tokio::test]
    async fn a_call_completes_with_its_reply() {
        let d = driver();
        let req = CallRequest::new("ws/c", "services.x.f", vec![], Duration::from_secs(5));
        let (guard, frame) = d.call(req);
        assert_eq!(frame.to, "ws/c");
        let session = guard.session().to_owned();
        assert!(d.is_pending(&session));
        d.handle_message(reply_frame("ws/c", &session, "resolve", "ok".into()));
        assert_eq!(guard.wait().await, Ok(Value::from("ok")));
        assert_eq!(d.pending_count(), 0);
    }

    #[tokio::test]
    async fn rejects_and_departures_map_to_typed_errors() {
        let d = driver();
        let (g1, _) = d.call(CallRequest::new(
            "ws/c",
            "m",
            vec![],
            Duration::from_secs(5),
        ));
        let s1 = g1.session().to_owned();
        d.handle_message(reply_frame(
            "ws/c",
            &s1,
            "reject",
            value::error("KeyError: k"),
        ));
        assert_eq!(
            g1.wait().await,
            Err(ManagerError::Remote("KeyError: k".into()))
        );
        let (g2, _) = d.call(CallRequest::new(
            "ws/c",
            "m",
            vec![],
            Duration::from_secs(5),
        ));
        d.fail_calls_to("ws/c");
        assert_eq!(
            g2.wait().await,
            Err(ManagerError::Disconnected(
                "Client disconnected: ws/c".into()
            ))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_times_out_silent_calls_and_heartbeats_extend_them() {
        struct NoRouter;
        impl RouterControl for NoRouter {
            fn manager_addr(&self) -> &str {
                "*/manager-t"
            }
            fn deliver(&self, _: &str, _: bytes::Bytes) -> bool {
                true
            }
            fn broadcast(&self, _: &str, _: &str, _: bytes::Bytes) {}
            fn deliver_event(&self, _: &str, _: &str, _: bytes::Bytes) {}
            fn subscribe(&self, _: &str, _: &[String]) -> bool {
                true
            }
            fn unsubscribe(&self, _: &str, _: &[String]) -> bool {
                true
            }
            fn close(&self, _: &str, _: Option<u64>, _: rhizo_interface::CloseReason) -> bool {
                true
            }
            fn client(&self, _: &str) -> Option<rhizo_interface::ClientPresence> {
                None
            }
            fn presence(&self, _: &str) -> Vec<rhizo_interface::ClientPresence> {
                vec![]
            }
            fn client_count(&self, _: &str) -> usize {
                0
            }
            fn workspace_counts(&self) -> Vec<(String, usize)> {
                vec![]
            }
            fn counters(&self) -> rhizo_interface::CountersSnapshot {
                Default::default()
            }
        }
        let d = driver();
        d.spawn_timer(Arc::new(NoRouter));
        let (guard, _) = d.call(CallRequest::new(
            "ws/c",
            "m",
            vec![],
            Duration::from_secs(2),
        ));
        let session = guard.session().to_owned();
        let waiting = tokio::spawn(guard.wait());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        d.handle_message(reply_frame("ws/c", &session, "heartbeat", Value::Nil));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(d.is_pending(&session), "the heartbeat extended the call");
        assert!(
            d.extend(&session),
            "a chunk keyed by the session extends it too"
        );
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let r = waiting.await.unwrap();
        assert!(
            matches!(&r, Err(ManagerError::Timeout(m)) if m.contains("m on ws/c")),
            "{r:?}"
        );
        assert!(!d.extend(&session));
    }

    #[tokio::test]
    async fn a_dropped_waiter_cancels_its_call() {
        let d = driver();
        let (guard, _) = d.call(CallRequest::new(
            "ws/c",
            "m",
            vec![],
            Duration::from_secs(5),
        ));
        let session = guard.session().to_owned();
        drop(guard);
        assert!(!d.is_pending(&session));
    }
}
