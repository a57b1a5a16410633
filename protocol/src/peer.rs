//! A sans-IO hypha-rpc peer: outgoing calls with their promises, timeouts and heartbeats,
//! incoming calls with their replies and heartbeats, and the `built-in` service every
//! client answers (protocol.md §3.4–§3.7, §4.2).
//!
//! [`RpcPeer`] performs no I/O and reads no clock; it is driven like `quinn-proto`'s
//! `Connection`. The driver (the client's socket task, the manager's router hook) owns the
//! transport and the timer and calls, in this order:
//!
//! 1. **Inputs** — [`RpcPeer::call`] to start a call (the frame is queued, not sent),
//!    [`RpcPeer::handle_frame`] / [`RpcPeer::handle_message`] for every frame that arrives,
//!    [`RpcPeer::respond`] when an incoming call it was handed has finished,
//!    [`RpcPeer::handle_timeout`] when the instant from [`RpcPeer::poll_timeout`] has come,
//!    and [`RpcPeer::fail_calls_to`] / [`RpcPeer::fail_all`] when a peer or the connection
//!    is gone.
//! 2. **Outputs**, after every input, until each returns `None`:
//!    [`RpcPeer::poll_transmit`] (frames to send, in order), [`RpcPeer::poll_event`]
//!    (completed calls, calls for the driver to run, frames that are not RPC), and
//!    [`RpcPeer::poll_timeout`] (when to call [`RpcPeer::handle_timeout`] next; it moves
//!    whenever an input adds a deadline, so re-read it after every input).
//!
//! Times are `std::time::Instant`s the driver passes in (a driver on tokio passes
//! `tokio::time::Instant::now().into_std()`, so paused test time works).
//!
//! What the peer does by itself:
//! * Outgoing calls carry a compact promise with `t` = timeout / 2 (§3.4). A call completes
//!   on `<session>.resolve|reject` from the address it was sent to; every
//!   `<session>.heartbeat` (or [`RpcPeer::extend`], for `message_cache` chunks keyed by the
//!   session, §4.2) pushes its deadline out by its timeout; the deadline passing completes
//!   it with [`CallError::Timeout`]. Replies from another address, or for unknown sessions,
//!   are ignored.
//! * Incoming calls whose promise is well formed ([`check_promise`]) are handed to the
//!   driver as [`PeerEvent::IncomingCall`]; while they run, the peer heartbeats the caller
//!   every interval the caller asked for (`t`, or the explicit promise's `interval`).
//!   Calls whose explicit promise points anywhere but back at the caller's own
//!   `<session>.resolve|reject|heartbeat` are refused unrun ([`PeerEvent::Refused`]).
//! * With [`Role::Client`], calls into `services.built-in.*` (`ping`, `get_service`) and
//!   calls into services it has not registered are answered without surfacing (see
//!   [`LocalServices`]); with [`Role::Manager`] every call surfaces.
//!
//! The generic `W` is the driver's waiter for an outgoing call (e.g. a `oneshot::Sender`);
//! it is stored with the call and handed back in [`PeerEvent::CallCompleted`], so a driver
//! serving many tasks needs no session map of its own.

use crate::message::{
    absolute, encode_frame, promise_callback, Call, Incoming, Message, Promise, ReplyKind,
};
use crate::value::{self, get_str, map};
use crate::FrameError;
use rmpv::Value;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Shortest heartbeat interval the peer keeps for an incoming call: a caller asking for
/// less (a tiny `t`) gets heartbeats this often, so it cannot make the driver spin.
pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);

/// What kind of peer this is; decides which incoming calls it answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A client (`"<ws>/<cid>"`): answers `services.built-in.ping` and
    /// `services.built-in.get_service` itself, rejects calls into services it has not
    /// registered (or members they lack, or protected ones from other workspaces, §3.7),
    /// surfaces calls into its registered services as [`PeerEvent::IncomingCall`] and
    /// method calls outside `services.` (callbacks it never handed out) as
    /// [`PeerEvent::Other`].
    Client,
    /// The manager (`"*/<manager_id>"`) or any peer with its own `built-in` service and
    /// callbacks: every incoming call surfaces as [`PeerEvent::IncomingCall`].
    Manager,
}

/// Settings of an [`RpcPeer`].
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Own address: `"<ws>/<cid>"` for a client, `"*/<manager_id>"` for the manager. It is
    /// the `from` of every frame the peer builds (the router overwrites it for clients),
    /// the `_rtarget` of the methods it describes, and the workspace bare targets are
    /// made absolute against.
    pub addr: String,
    /// The server's `public_base_url`: `_rserver` of the methods the peer describes (a peer
    /// seeing another server URL there re-encodes the method as a proxy, §4.3).
    pub server_url: String,
    /// Which calls the peer answers itself.
    pub role: Role,
    /// Prefix of the session ids of outgoing calls; the peer appends a counter. Make it
    /// unguessable and unique per connection (e.g. 8+ random characters), since a reply
    /// is matched by session.
    pub session_prefix: String,
}

/// An outgoing call for [`RpcPeer::call`].
#[derive(Debug, Clone, PartialEq)]
pub struct CallRequest {
    /// Target address as the callee is known: `"<ws>/<cid>"`, `"*/<manager_id>"`, or a bare
    /// client id in the own workspace. The reply must come from this address.
    pub to: String,
    /// Method path, e.g. `services.default.list_services`.
    pub method: String,
    /// Encoded positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments (a map), sent as the last argument with `with_kwargs: true` (§3.5).
    pub kwargs: Option<Value>,
    /// How long to wait for a reply or a heartbeat; `t` = half of it (§3.4).
    pub timeout: Duration,
    /// `(ws, user)` to stamp in the header: what the callee sees as the caller's workspace
    /// and user. Only the manager sets this (its frames are not stamped by the router,
    /// §2.3); for clients the router overwrites both.
    pub on_behalf: Option<(String, Value)>,
}

/// A frame the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination address (`"<ws>/<cid>"` or `"*/<manager_id>"`); a client writes every
    /// frame to its socket regardless, the manager delivers to this address.
    pub to: String,
    /// The whole frame: msgpack header and extra segment (§2.1).
    pub frame: Vec<u8>,
}

/// Why an outgoing call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The callee rejected the call; the text is the error's `_rvalue` (§3.4).
    #[error("{0}")]
    Rejected(String),
    /// Neither a reply nor a heartbeat came within the call's timeout.
    #[error("TimeoutError: Method call timed out: {method} on {to} ({}s)", .timeout.as_secs_f64())]
    Timeout {
        /// The address called.
        to: String,
        /// The method called.
        method: String,
        /// The call's timeout.
        timeout: Duration,
    },
    /// The driver gave up on the call ([`RpcPeer::fail_calls_to`], [`RpcPeer::fail_all`]);
    /// the text is the reason it gave.
    #[error("{0}")]
    Failed(String),
}

/// Why an incoming call was refused without being run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A callback of the explicit promise targets another peer than the caller.
    #[error("promise callback targets another peer than the caller")]
    ForeignTarget,
    /// A callback's `_rmethod` is not `<session>.resolve|reject|heartbeat`, or is a
    /// service method (`services.…`), or the callback lacks `_rtarget`/`_rmethod`.
    #[error("promise callback is not <session>.resolve|reject|heartbeat")]
    BadMethod,
}

/// Identifies an incoming call between [`PeerEvent::IncomingCall`] and
/// [`RpcPeer::respond`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncomingId(u64);

/// Something the driver must act on.
#[derive(Debug)]
pub enum PeerEvent<W = ()> {
    /// An outgoing call finished: resolved, rejected, timed out or failed.
    CallCompleted {
        /// The session [`RpcPeer::call`] returned.
        session: String,
        /// The waiter given to [`RpcPeer::call`].
        waiter: W,
        /// The encoded result, or why there is none.
        result: Result<Value, CallError>,
    },
    /// A call for the driver to run; answer it with [`RpcPeer::respond`] (also for
    /// fire-and-forget calls, where that sends nothing).
    IncomingCall {
        /// Pass this to [`RpcPeer::respond`].
        id: IncomingId,
        /// The call: method, trusted `from`/`ws`/`user`, arguments, promise.
        call: Box<Call>,
    },
    /// An incoming call was dropped unrun because of its promise.
    Refused {
        /// The caller.
        from: String,
        /// The method it called.
        method: String,
        /// What was wrong.
        reason: Refused,
    },
    /// A frame that is no RPC traffic of this peer: an event, a broadcast, or (for
    /// [`Role::Client`]) a call of a callback outside `services.`.
    Other(Message),
}

/// An RPC peer. See the module docs for the contract.
#[derive(Debug)]
pub struct RpcPeer<W = ()> {
    config: PeerConfig,
    services: LocalServices,
    next_session: u64,
    next_incoming: u64,
    /// Outgoing calls waiting for a reply, by session.
    pending: HashMap<String, Pending<W>>,
    /// Incoming calls being run that expect a reply, by id.
    incoming: HashMap<u64, InFlight>,
    /// Deadlines and heartbeat times; entries whose call moved on are skipped when met.
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<PeerEvent<W>>,
}

#[derive(Debug)]
struct Pending<W> {
    to: String,
    method: String,
    timeout: Duration,
    deadline: Instant,
    waiter: W,
}

#[derive(Debug)]
struct InFlight {
    /// The call without its arguments: enough to route the reply and heartbeats.
    call: Call,
    interval: Duration,
    next_heartbeat: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Deadline(String),
    Heartbeat(u64),
}

// === impl CallRequest ===

impl CallRequest {
    /// A call of `method` on `to` with positional `args`, waiting up to `timeout`.
    pub fn new(
        to: impl Into<String>,
        method: impl Into<String>,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Self {
        CallRequest {
            to: to.into(),
            method: method.into(),
            args,
            kwargs: None,
            timeout,
            on_behalf: None,
        }
    }

    /// Adds keyword arguments (a map, or nil for none).
    pub fn with_kwargs(mut self, kwargs: Option<Value>) -> Self {
        self.kwargs = kwargs;
        self
    }

    /// Stamps `ws` and `user` (an encoded user record, §8.3) in the header: the manager
    /// calling on behalf of a caller (§2.3, §4.6).
    pub fn on_behalf_of(mut self, ws: impl Into<String>, user: Value) -> Self {
        self.on_behalf = Some((ws.into(), user));
        self
    }
}

/// Encodes a call frame: header `{type, from, to, method, session[, ws, user]}` and extra
/// `{args, promise:"*", t[, with_kwargs]}` with `t` = timeout / 2 seconds (§3.4, §3.5).
fn encode_request(from: &str, session: &str, req: CallRequest) -> Vec<u8> {
    let CallRequest {
        to,
        method,
        mut args,
        kwargs,
        timeout,
        on_behalf,
    } = req;
    let mut header = map([
        ("type", "method".into()),
        ("from", from.into()),
        ("to", to.into()),
        ("method", method.into()),
        ("session", session.into()),
    ]);
    if let Some((ws, user)) = on_behalf {
        value::set(&mut header, "ws", ws.into());
        value::set(&mut header, "user", user);
    }
    let with_kwargs = kwargs.is_some();
    if let Some(kw) = kwargs {
        args.push(kw);
    }
    let mut extra = map([
        ("args", Value::Array(args)),
        ("promise", "*".into()),
        ("t", Value::F64(timeout.as_secs_f64() / 2.0)),
    ]);
    if with_kwargs {
        value::set(&mut extra, "with_kwargs", true.into());
    }
    encode_frame(&header, Some(&extra))
}

// === promise routing ===

/// Checks an incoming call's explicit promise before anything is run or sent (compact
/// promises and fire-and-forget calls always pass): every callback's `_rtarget`, made
/// absolute against the caller's workspace, must be the caller's trusted `from`, and its
/// `_rmethod` must be `<session>.resolve`, `.reject` or `.heartbeat` outside `services.`.
/// Otherwise a caller could make this peer call a third peer, or a service, with its
/// own identity.
///
/// Errors: [`Refused`] naming the broken rule.
pub fn check_promise(call: &Call) -> Result<(), Refused> {
    let Promise::Explicit {
        resolve,
        reject,
        heartbeat,
        ..
    } = &call.promise
    else {
        return Ok(());
    };
    for cb in [Some(resolve), Some(reject), heartbeat.as_ref()]
        .into_iter()
        .flatten()
    {
        // The rule itself is `message::promise_callback`, which `Call::reply` and
        // `Call::heartbeat` apply too; here it only gains a reason.
        if promise_callback(cb, &call.from).is_some() {
            continue;
        }
        let foreign = get_str(cb, "_rtarget").is_some_and(|t| absolute(t, &call.from) != call.from);
        return Err(if foreign {
            Refused::ForeignTarget
        } else {
            Refused::BadMethod
        });
    }
    Ok(())
}

/// The reply frame for `call` from `from` (own address), or `None` for fire-and-forget
/// calls and for promises [`check_promise`] refuses ([`Call::reply`] applies the rule).
/// Rejects carry the `_rtype:"error"` map Python callers need (§3.4).
pub fn reply(call: &Call, from: &str, result: Result<Value, String>) -> Option<Transmit> {
    let (to, frame) = call.reply(from, result)?;
    Some(Transmit { to, frame })
}

/// A heartbeat frame for a running `call` (§3.4), or `None` when the caller asked for
/// none or [`check_promise`] refuses its promise ([`Call::heartbeat`] applies the rule).
pub fn heartbeat(call: &Call, from: &str) -> Option<Transmit> {
    let (to, frame) = call.heartbeat(from)?;
    Some(Transmit { to, frame })
}

/// The heartbeat interval a caller asked for (`t` or `interval`), if positive.
fn heartbeat_interval(call: &Call) -> Option<Duration> {
    let secs = match &call.promise {
        Promise::Compact { interval } => *interval,
        Promise::Explicit {
            heartbeat: Some(_),
            interval,
            ..
        } => *interval,
        _ => None,
    }?;
    let d = Duration::try_from_secs_f64(secs).ok()?;
    (!d.is_zero()).then(|| d.max(MIN_HEARTBEAT_INTERVAL))
}

// === impl RpcPeer ===

impl<W> RpcPeer<W> {
    /// A peer with no calls and no services.
    pub fn new(config: PeerConfig) -> Self {
        RpcPeer {
            services: LocalServices::new(config.addr.clone(), config.server_url.clone()),
            config,
            next_session: 1,
            next_incoming: 1,
            pending: HashMap::new(),
            incoming: HashMap::new(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Own address, as configured.
    pub fn addr(&self) -> &str {
        &self.config.addr
    }

    /// The settings.
    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// The services this peer describes and checks calls against ([`Role::Client`]).
    pub fn services(&self) -> &LocalServices {
        &self.services
    }

    /// Mutable access to the services, to register or unregister one.
    pub fn services_mut(&mut self) -> &mut LocalServices {
        &mut self.services
    }

    /// Outgoing calls waiting for a reply.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Incoming calls handed to the driver that expect a reply and have not been
    /// answered.
    pub fn incoming_count(&self) -> usize {
        self.incoming.len()
    }

    /// Whether the outgoing call `session` is still waiting.
    pub fn is_pending(&self, session: &str) -> bool {
        self.pending.contains_key(session)
    }

    // --- inputs ---

    /// Starts a call: queues its frame (see [`RpcPeer::poll_transmit`]) and waits for the
    /// reply until `now + req.timeout`, each heartbeat restarting that wait. Returns the
    /// session id; the outcome arrives as [`PeerEvent::CallCompleted`] with `waiter`.
    pub fn call(&mut self, now: Instant, req: CallRequest, waiter: W) -> String {
        let session = format!("{}{}", self.config.session_prefix, self.next_session);
        self.next_session += 1;
        let (to, method, timeout) = (req.to.clone(), req.method.clone(), req.timeout);
        let frame = encode_request(&self.config.addr, &session, req);
        let deadline = now + timeout;
        self.transmits.push_back(Transmit {
            to: to.clone(),
            frame,
        });
        self.pending.insert(
            session.clone(),
            Pending {
                to,
                method,
                timeout,
                deadline,
                waiter,
            },
        );
        // After the insert: `push_timer` may drop entries of calls it does not know.
        self.push_timer(deadline, Timer::Deadline(session.clone()));
        session
    }

    /// Handles one whole frame that arrived for this peer (stamped by the router).
    ///
    /// Errors: [`FrameError`] if it is not one or two msgpack maps; nothing changes then.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> Result<(), FrameError> {
        let m = Message::decode(frame)?;
        self.handle_message(now, m);
        Ok(())
    }

    /// Handles one decoded frame: completes or extends outgoing calls on replies and
    /// heartbeats, answers or surfaces incoming calls, surfaces everything else as
    /// [`PeerEvent::Other`].
    pub fn handle_message(&mut self, now: Instant, m: Message) {
        let merged = &m.merged;
        let Some(method) = get_str(merged, "method").filter(|_| is_method_call(merged)) else {
            self.events.push_back(PeerEvent::Other(m));
            return;
        };
        let mut from = None;
        if !method.starts_with("services.") {
            let reply = method
                .rsplit_once('.')
                .is_some_and(|(_, n)| matches!(n, "resolve" | "reject" | "heartbeat"));
            if reply {
                from = Some(get_str(&m.header, "from").unwrap_or_default().to_owned());
            } else if self.config.role == Role::Client && !self.services.is_exposed(method) {
                self.events.push_back(PeerEvent::Other(m));
                return;
            }
        }
        match m.classify() {
            Incoming::Reply { session, kind } => {
                self.on_reply(now, from.as_deref().unwrap_or_default(), &session, kind)
            }
            Incoming::Call(call) => self.on_call(now, call),
            Incoming::Other => {}
        }
    }

    /// Hands back the result of incoming call `id` and queues its reply (nothing for a
    /// fire-and-forget call); its heartbeats stop. `Err` is the error text the caller
    /// sees. Returns whether `id` was still waiting for an answer (false for
    /// fire-and-forget calls, calls already answered and calls of a peer that left).
    pub fn respond(&mut self, id: IncomingId, result: Result<Value, String>) -> bool {
        let Some(f) = self.incoming.remove(&id.0) else {
            return false;
        };
        if let Some(t) = reply(&f.call, &self.config.addr, result) {
            self.transmits.push_back(t);
        }
        true
    }

    /// Acts on every timer due at `now`: outgoing calls past their deadline complete with
    /// [`CallError::Timeout`]; running incoming calls whose heartbeat is due send one.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, timer))) = self.timers.pop() else {
                break;
            };
            match timer {
                Timer::Deadline(session) => {
                    if self.pending.get(&session).is_some_and(|p| p.deadline == at) {
                        let p = self.pending.remove(&session).expect("checked above");
                        self.events.push_back(PeerEvent::CallCompleted {
                            session,
                            waiter: p.waiter,
                            result: Err(CallError::Timeout {
                                to: p.to,
                                method: p.method,
                                timeout: p.timeout,
                            }),
                        });
                    }
                }
                Timer::Heartbeat(id) => {
                    let Some(f) = self.incoming.get_mut(&id) else {
                        continue;
                    };
                    if f.next_heartbeat != Some(at) {
                        continue;
                    }
                    let next = now + f.interval;
                    f.next_heartbeat = Some(next);
                    if let Some(t) = heartbeat(&f.call, &self.config.addr) {
                        self.transmits.push_back(t);
                    }
                    self.push_timer(next, Timer::Heartbeat(id));
                }
            }
        }
    }

    /// Pushes the deadline of outgoing call `session` out to `now` + its timeout, as a
    /// heartbeat does; for `message_cache` chunks the callee sends keyed by that session
    /// (§4.2 case b). Returns whether the call is pending.
    pub fn extend(&mut self, now: Instant, session: &str) -> bool {
        let Some(p) = self.pending.get_mut(session) else {
            return false;
        };
        p.deadline = now + p.timeout;
        let at = p.deadline;
        self.push_timer(at, Timer::Deadline(session.to_owned()));
        true
    }

    /// Drops outgoing call `session` without an event (its waiter gave up); returns the
    /// waiter if it was pending.
    pub fn cancel(&mut self, session: &str) -> Option<W> {
        self.pending.remove(session).map(|p| p.waiter)
    }

    /// Peer `addr` (`"<ws>/<cid>"`) left: its pending calls complete at once with
    /// [`CallError::Failed`]`(reason)`, and the incoming calls it made are forgotten (no
    /// heartbeats, no replies). Returns how many outgoing calls failed.
    pub fn fail_calls_to(&mut self, addr: &str, reason: &str) -> usize {
        let own = &self.config.addr;
        let sessions: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| absolute(&p.to, own) == addr)
            .map(|(s, _)| s.clone())
            .collect();
        for s in &sessions {
            self.fail(s, reason);
        }
        self.incoming.retain(|_, f| f.call.from != addr);
        sessions.len()
    }

    /// The connection is gone: every pending call completes with
    /// [`CallError::Failed`]`(reason)` and every incoming call is forgotten.
    pub fn fail_all(&mut self, reason: &str) {
        let sessions: Vec<String> = self.pending.keys().cloned().collect();
        for s in &sessions {
            self.fail(s, reason);
        }
        self.incoming.clear();
        self.timers.clear();
    }

    // --- outputs ---

    /// The next frame to send, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<PeerEvent<W>> {
        self.events.pop_front()
    }

    /// When [`RpcPeer::handle_timeout`] must be called next, or `None` with nothing timed.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, timer))) = self.timers.peek() {
            if self.is_live(*at, timer) {
                return Some(*at);
            }
            self.timers.pop();
        }
        None
    }

    // --- internals ---

    fn on_reply(&mut self, now: Instant, from: &str, session: &str, kind: ReplyKind) {
        let own = &self.config.addr;
        let Some(p) = self.pending.get_mut(session) else {
            return;
        };
        // Only the peer that was called may answer (§3.4); a bare target is in our
        // workspace.
        let from_callee = if p.to.contains('/') {
            p.to == from
        } else {
            absolute(&p.to, own) == from
        };
        if !from_callee {
            return;
        }
        let result = match kind {
            ReplyKind::Heartbeat => {
                p.deadline = now + p.timeout;
                let at = p.deadline;
                self.push_timer(at, Timer::Deadline(session.to_owned()));
                return;
            }
            ReplyKind::Resolve(v) => Ok(v),
            ReplyKind::Reject(e) => Err(CallError::Rejected(e)),
        };
        let p = self.pending.remove(session).expect("looked up above");
        self.events.push_back(PeerEvent::CallCompleted {
            session: session.to_owned(),
            waiter: p.waiter,
            result,
        });
    }

    fn on_call(&mut self, now: Instant, call: Box<Call>) {
        if let Err(reason) = check_promise(&call) {
            self.events.push_back(PeerEvent::Refused {
                from: call.from,
                method: call.method,
                reason,
            });
            return;
        }
        if self.config.role == Role::Client {
            if let Route::Answer(r) = self.services.route(&call) {
                if let Some(t) = reply(&call, &self.config.addr, r) {
                    self.transmits.push_back(t);
                }
                return;
            }
        }
        let id = self.next_incoming;
        self.next_incoming += 1;
        if call.promise != Promise::None {
            let interval = heartbeat_interval(&call);
            let next_heartbeat = interval.map(|i| now + i);
            let route = Call {
                method: call.method.clone(),
                from: call.from.clone(),
                ws: call.ws.clone(),
                user: Value::Nil,
                session: call.session.clone(),
                args: Vec::new(),
                kwargs: Vec::new(),
                promise: call.promise.clone(),
            };
            self.incoming.insert(
                id,
                InFlight {
                    call: route,
                    interval: interval.unwrap_or_default(),
                    next_heartbeat,
                },
            );
            if let Some(at) = next_heartbeat {
                self.push_timer(at, Timer::Heartbeat(id));
            }
        }
        self.events.push_back(PeerEvent::IncomingCall {
            id: IncomingId(id),
            call,
        });
    }

    fn fail(&mut self, session: &str, reason: &str) {
        if let Some(p) = self.pending.remove(session) {
            self.events.push_back(PeerEvent::CallCompleted {
                session: session.to_owned(),
                waiter: p.waiter,
                result: Err(CallError::Failed(reason.to_owned())),
            });
        }
    }

    fn is_live(&self, at: Instant, timer: &Timer) -> bool {
        match timer {
            Timer::Deadline(s) => self.pending.get(s).is_some_and(|p| p.deadline == at),
            Timer::Heartbeat(id) => self
                .incoming
                .get(id)
                .is_some_and(|f| f.next_heartbeat == Some(at)),
        }
    }

    /// Adds a timer; when stale entries (of completed or extended calls) outnumber the
    /// live ones, drops them, so the heap stays proportional to the calls in flight.
    fn push_timer(&mut self, at: Instant, timer: Timer) {
        self.timers.push(Reverse((at, timer)));
        let live = self.pending.len() + self.incoming.len();
        if self.timers.len() > 64 + 2 * live {
            let timers = std::mem::take(&mut self.timers);
            self.timers = timers
                .into_iter()
                .filter(|Reverse((at, t))| self.is_live(*at, t))
                .collect();
        }
    }
}

/// `type == "method"`: an RPC call or reply rather than an event.
fn is_method_call(merged: &Value) -> bool {
    get_str(merged, "type") == Some("method")
}

mod services;
pub use services::{built_in_record, service_record, visible_to, LocalServices, Route};

#[cfg(test)]
mod tests;
