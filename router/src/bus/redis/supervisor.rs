//! The Redis bus's supervisor task: connects (with backoff), loads the directory, writes
//! the outbox in batches, beats the heartbeat, drops nodes whose heartbeat expired, and
//! follows local interest in workspace channels. It is the only place that awaits Redis;
//! the push callback in the parent module never does.

use super::*;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

// === the supervisor task ===

/// Why a session with Redis ended.
enum End {
    Stop,
    Lost,
}

pub(super) async fn supervise(
    s: Arc<Shared>,
    client: redis::Client,
    mut outbox: mpsc::Receiver<Outgoing>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut announce = None;
    while !s.stopping.load(Acquire) {
        let session = s.session.fetch_add(1, AcqRel) + 1;
        match connect(&s, &client, session).await {
            Ok((sub, mut cmd)) => {
                backoff = Duration::from_millis(100);
                tracing::info!(node = %s.cfg.node_id, "cluster bus connected");
                let end = run(&s, sub, &mut cmd, &mut outbox).await;
                if let End::Stop = end {
                    // What the router queued before the stop still goes out, bounded.
                    let mut last = Vec::new();
                    while let Ok(item) = outbox.try_recv() {
                        last.push(item);
                    }
                    if !last.is_empty() {
                        let mut channels = HashMap::new();
                        let flush = write_batch(s.clone(), cmd.clone(), last, &mut channels);
                        let _ = tokio::time::timeout(Duration::from_secs(1), flush).await;
                    }
                }
                s.connected.store(false, Release);
                // What was queued for the lost connection is not written: envelopes for a
                // node go back to be failed at once, broadcasts are dropped.
                while let Ok(item) = outbox.try_recv() {
                    match item {
                        Outgoing::Node(node, env) => s.bounce(&node, env),
                        Outgoing::Cluster(Some(node), env) => s.bounce(&node, env),
                        Outgoing::Workspace(..) | Outgoing::Cluster(None, _) => {
                            s.outbox_dropped.fetch_add(1, Relaxed);
                        }
                        Outgoing::Joined(_) | Outgoing::Left(_) => {}
                    }
                }
                if let End::Stop = end {
                    announce = Some(cmd);
                    break;
                }
                tracing::warn!(node = %s.cfg.node_id, "cluster bus disconnected; reconnecting");
            }
            Err(e) => {
                s.connected.store(false, Release);
                tracing::debug!(error = %e, "cluster bus: connecting to Redis failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = s.stop.notified() => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    if let Some(mut cmd) = announce {
        let me = &s.cfg.node_id;
        let n = &s.names;
        let mut p = redis::pipe();
        p.publish(&n.control, ControlMsg::Down { node: me }.encode())
            .ignore()
            .del(n.clients(me))
            .ignore()
            .del(n.alive(me))
            .ignore()
            .srem(&n.nodes, me)
            .ignore();
        let r = tokio::time::timeout(Duration::from_secs(2), p.query_async::<()>(&mut cmd)).await;
        if !matches!(r, Ok(Ok(()))) {
            tracing::warn!("cluster bus: could not announce this node's shutdown");
        }
    }
    let _ = s.done.send(true);
}

/// Opens both connections, subscribes, loads the directory, rewrites this node's entries
/// and marks the bus connected.
async fn connect(
    s: &Arc<Shared>,
    client: &redis::Client,
    session: u64,
) -> redis::RedisResult<(MultiplexedConnection, MultiplexedConnection)> {
    let base = AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(Duration::from_secs(3));
    let pushes = s.clone();
    let sub_cfg = base.clone().set_push_sender(move |info: PushInfo| {
        pushes.on_push(session, info);
        Ok::<(), std::convert::Infallible>(())
    });
    let mut sub = client
        .get_multiplexed_async_connection_with_config(&sub_cfg)
        .await?;
    let mut cmd = client
        .get_multiplexed_async_connection_with_config(&base)
        .await?;
    let n = &s.names;
    let me = &s.cfg.node_id;
    sub.subscribe(&[n.node(me), n.control.clone()]).await?;
    let wanted: Vec<String> = s
        .wanted
        .lock()
        .map(|w| w.iter().cloned().collect())
        .unwrap_or_default();
    for ws in &wanted {
        sub.subscribe(n.ws(ws)).await?;
    }
    // Subscribed to control first, then loaded: no change falls in between.
    load_directory(s, &mut cmd).await?;
    s.connected.store(true, Release);
    rewrite_own(s, &mut cmd).await?;
    Ok((sub, cmd))
}

/// Replaces the replica with every live node's hash, and forgets nodes found dead.
async fn load_directory(s: &Shared, cmd: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    let n = &s.names;
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&n.nodes)
        .query_async(cmd)
        .await?;
    let known: HashSet<&str> = nodes.iter().map(String::as_str).collect();
    for old in s.directory.nodes() {
        if !known.contains(&*old) {
            s.tell_gone(s.directory.drop_node(&old));
        }
    }
    for old in s.peers.lock().map(|p| p.clone()).unwrap_or_default() {
        if !known.contains(old.as_str()) {
            s.peer_left(&old);
        }
    }
    for node in nodes.iter().filter(|x| **x != s.cfg.node_id) {
        if reload_node(s, cmd, node).await? {
            // This node (re)connected: it may have missed the peer's messages.
            s.peer_joined(node, true);
        }
    }
    Ok(())
}

/// Reloads `node`'s entries if it is alive (returns true), else drops it.
async fn reload_node(
    s: &Shared,
    cmd: &mut MultiplexedConnection,
    node: &str,
) -> redis::RedisResult<bool> {
    let n = &s.names;
    let alive: bool = redis::cmd("EXISTS")
        .arg(n.alive(node))
        .query_async(cmd)
        .await?;
    if alive {
        let addrs: Vec<String> = redis::cmd("HKEYS")
            .arg(n.clients(node))
            .query_async(cmd)
            .await?;
        let gone = s
            .directory
            .replace_node(node, addrs.iter().map(String::as_str));
        s.tell_gone(gone);
    } else {
        s.tell_gone(s.directory.drop_node(node));
        s.peer_left(node);
        redis::cmd("SREM")
            .arg(&n.nodes)
            .arg(node)
            .query_async::<()>(cmd)
            .await?;
    }
    Ok(alive)
}

/// Rewrites this node's hash from the client table and tells the others to reload it.
async fn rewrite_own(s: &Shared, cmd: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    s.resync.store(false, Release);
    let n = &s.names;
    let me = &s.cfg.node_id;
    let addrs = s.local.get().map(|l| l.addresses()).unwrap_or_default();
    let ttl = s.ttl_secs();
    let key = n.clients(me);
    let mut p = redis::pipe();
    p.atomic().del(&key).ignore();
    for chunk in addrs.chunks(512) {
        let items: Vec<(&str, u8)> = chunk.iter().map(|a| (a.as_str(), 1)).collect();
        p.hset_multiple(&key, &items).ignore();
    }
    p.expire(&key, ttl as i64)
        .ignore()
        .set_ex(n.alive(me), 1, ttl)
        .ignore()
        .sadd(&n.nodes, me)
        .ignore()
        .publish(&n.control, ControlMsg::Sync { node: me }.encode())
        .ignore();
    p.query_async::<()>(cmd).await
}

/// Most batch writes in flight on the command connection at once: a batch goes out while
/// the replies to the previous ones are still on their way, so a node never waits a Redis
/// round trip between two batches (pipelined, in order).
const WRITES_IN_FLIGHT: usize = 8;

/// A batch write on its way: its outcome, once Redis answered.
type Write = Pin<Box<dyn Future<Output = redis::RedisResult<()>> + Send>>;

/// One connected session: write what is queued, beat the heartbeat, follow interest,
/// until an error (reconnect) or a stop. The writes still in flight when it ends are
/// awaited (bounded), so that their envelopes are delivered or given back.
async fn run(
    s: &Arc<Shared>,
    mut sub: MultiplexedConnection,
    cmd: &mut MultiplexedConnection,
    outbox: &mut mpsc::Receiver<Outgoing>,
) -> End {
    let mut writes: FuturesUnordered<Write> = FuturesUnordered::new();
    let end = session(s, &mut sub, cmd, outbox, &mut writes).await;
    let settle = async { while writes.next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(2), settle).await;
    end
}

async fn session(
    s: &Arc<Shared>,
    sub: &mut MultiplexedConnection,
    cmd: &mut MultiplexedConnection,
    outbox: &mut mpsc::Receiver<Outgoing>,
    writes: &mut FuturesUnordered<Write>,
) -> End {
    let mut subscribed: HashSet<String> = s.wanted.lock().map(|w| w.clone()).unwrap_or_default();
    let mut channels: HashMap<Arc<str>, String> = HashMap::new();
    let mut batch = Vec::with_capacity(256);
    let mut heartbeat = tokio::time::interval(s.cfg.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await; // the first tick is immediate; connect() just wrote everything
    loop {
        let result = tokio::select! {
            biased;
            _ = s.stop.notified() => return End::Stop,
            _ = s.lost.notified() => return End::Lost,
            Some(done) = writes.next(), if !writes.is_empty() => done,
            got = outbox.recv_many(&mut batch, 256), if writes.len() < WRITES_IN_FLIGHT => {
                if got == 0 {
                    return End::Stop;
                }
                let mut write: Write =
                    Box::pin(write_batch(s.clone(), cmd.clone(), std::mem::take(&mut batch), &mut channels));
                // Polled once here, so that batches reach the connection in their order.
                match std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
                    Poll::Ready(done) => done,
                    Poll::Pending => {
                        writes.push(write);
                        Ok(())
                    }
                }
            }
            _ = heartbeat.tick() => beat(s, cmd).await,
            _ = s.changed.notified() => follow(s, sub, cmd, &mut subscribed).await,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "cluster bus: Redis command failed");
            return End::Lost;
        }
        if s.stopping.load(Acquire) {
            return End::Stop;
        }
    }
}

/// Most bytes one bundle carries; a batch for one channel that is larger is split, so
/// that no single Redis message grows past what a subscriber's output buffer takes.
const BUNDLE_MAX: usize = 1 << 20;

/// The envelopes of one batch for one channel, published as one message.
struct Group {
    channel: String,
    /// The node the channel belongs to (its publish count is read: 0 means nobody took
    /// it), or `None` for a workspace or the control channel.
    node: Option<Arc<str>>,
    parts: Vec<Bytes>,
    size: usize,
}

/// Several envelopes written as one bundle argument ([`envelope::write_bundle`]) straight
/// into the command buffer; a single envelope is written as it is.
struct BundleArg<'a>(&'a [Bytes]);

impl redis::ToRedisArgs for BundleArg<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        if let [one] = self.0 {
            out.write_arg(one);
            return;
        }
        let mut w = out.writer_for_next_arg();
        // Writing into a Vec cannot fail; parts are far below 4 GiB.
        let _ = envelope::write_bundle(&mut w, self.0.iter().map(|b| &b[..]));
    }
}

/// Writes one batch from the outbox as one pipeline: directory changes in their order,
/// then the envelopes bundled per channel (one PUBLISH per channel, in the order the
/// channels first appear). A node channel's publish that reached no subscriber (the node
/// is gone or restarting) and every node envelope of a failed write go back through
/// [`Shared::bounce`].
///
/// The pipeline is built before the returned future first runs (it borrows `channels`
/// only for that), so the future owns everything it needs.
fn write_batch(
    s: Arc<Shared>,
    mut cmd: MultiplexedConnection,
    mut batch: Vec<Outgoing>,
    channels: &mut HashMap<Arc<str>, String>,
) -> impl Future<Output = redis::RedisResult<()>> + Send + 'static {
    let (p, groups, frames) = build_batch(&s, &mut batch, channels);
    async move {
        match p.query_async::<Vec<i64>>(&mut cmd).await {
            Ok(counts) => {
                s.sent.fetch_add(frames, Relaxed);
                let asked = groups.iter().filter(|g| g.node.is_some());
                for (g, count) in asked.zip(counts) {
                    if count == 0 {
                        let node = g.node.as_deref().unwrap_or_default();
                        tracing::debug!(%node, envelopes = g.parts.len(), "cluster bus: no node took these envelopes");
                        for env in &g.parts {
                            s.bounce(node, env.clone());
                        }
                    }
                }
                Ok(())
            }
            Err(e) => {
                for g in groups {
                    match g.node {
                        Some(node) => g.parts.into_iter().for_each(|env| s.bounce(&node, env)),
                        None => {
                            s.outbox_dropped.fetch_add(g.parts.len() as u64, Relaxed);
                        }
                    }
                }
                Err(e)
            }
        }
    }
}

/// The pipeline for one batch (see [`write_batch`]), its groups of envelopes and how many
/// envelopes it carries.
fn build_batch(
    s: &Shared,
    batch: &mut Vec<Outgoing>,
    channels: &mut HashMap<Arc<str>, String>,
) -> (redis::Pipeline, Vec<Group>, u64) {
    let n = &s.names;
    let me = &s.cfg.node_id;
    let clients = n.clients(me);
    let mut p = redis::pipe();
    let mut groups: Vec<Group> = Vec::new();
    let mut open: HashMap<String, usize> = HashMap::new();
    // The channel name is copied once per group, not per envelope.
    let mut add = |channel: &str, node: Option<Arc<str>>, env: Bytes| {
        let at = match open.get(channel) {
            Some(&i) if groups[i].size + env.len() <= BUNDLE_MAX => i,
            _ => {
                groups.push(Group {
                    channel: channel.to_owned(),
                    node,
                    parts: Vec::new(),
                    size: 0,
                });
                open.insert(channel.to_owned(), groups.len() - 1);
                groups.len() - 1
            }
        };
        groups[at].size += env.len();
        groups[at].parts.push(env);
    };
    for item in batch.drain(..) {
        match item {
            Outgoing::Node(node, env) => {
                if !channels.contains_key(&node) {
                    channels.insert(node.clone(), n.node(&node));
                }
                add(&channels[&node], Some(node), env);
            }
            Outgoing::Workspace(ws, env) => add(&n.ws(&ws), None, env),
            Outgoing::Cluster(Some(node), env) => {
                let node: Arc<str> = Arc::from(node);
                add(&n.node(&node), Some(node), env);
            }
            Outgoing::Cluster(None, env) => add(&n.control, None, env),
            Outgoing::Joined(addr) => {
                p.hset(&clients, &addr, 1)
                    .ignore()
                    .publish(
                        &n.control,
                        ControlMsg::Joined {
                            node: me,
                            addr: &addr,
                        }
                        .encode(),
                    )
                    .ignore();
            }
            Outgoing::Left(addr) => {
                p.hdel(&clients, &addr)
                    .ignore()
                    .publish(
                        &n.control,
                        ControlMsg::Left {
                            node: me,
                            addr: &addr,
                        }
                        .encode(),
                    )
                    .ignore();
            }
        }
    }
    if channels.len() > 1024 {
        channels.clear();
    }
    let mut frames = 0u64;
    for g in &groups {
        frames += g.parts.len() as u64;
        p.publish(&g.channel, BundleArg(&g.parts));
        if g.node.is_none() {
            p.ignore();
        }
    }
    (p, groups, frames)
}

/// The heartbeat: refresh this node's keys (rewrite them if they were lost or missed),
/// then drop the nodes whose `alive` key expired.
async fn beat(s: &Shared, cmd: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    let n = &s.names;
    let me = &s.cfg.node_id;
    let ttl = s.ttl_secs();
    let ((), added): ((), i64) = redis::pipe()
        .set_ex(n.alive(me), 1, ttl)
        .expire(n.clients(me), ttl as i64)
        .ignore()
        .sadd(&n.nodes, me)
        .query_async(cmd)
        .await?;
    if added == 1 || s.resync.load(Acquire) {
        // Someone took this node for dead (or a directory change was missed).
        rewrite_own(s, cmd).await?;
    }
    let mut nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&n.nodes)
        .query_async(cmd)
        .await?;
    // Also the nodes only the replica or the peer set know (announced, never or no
    // longer in the set).
    let peers = s.peers.lock().map(|p| p.clone()).unwrap_or_default();
    for known in s
        .directory
        .nodes()
        .iter()
        .map(|k| k.to_string())
        .chain(peers)
    {
        if !nodes.contains(&known) {
            nodes.push(known);
        }
    }
    for node in nodes.iter().filter(|x| *x != me) {
        let alive: bool = redis::cmd("EXISTS")
            .arg(n.alive(node))
            .query_async(cmd)
            .await?;
        if !alive {
            tracing::info!(node = %node, "cluster bus: node's heartbeat expired; dropping its clients");
            s.tell_gone(s.directory.drop_node(node));
            s.peer_left(node);
            redis::cmd("SREM")
                .arg(&n.nodes)
                .arg(node)
                .query_async::<()>(cmd)
                .await?;
        }
    }
    Ok(())
}

/// Reconciles the workspace subscriptions with local interest and reloads the nodes that
/// asked for it.
async fn follow(
    s: &Shared,
    sub: &mut MultiplexedConnection,
    cmd: &mut MultiplexedConnection,
    subscribed: &mut HashSet<String>,
) -> redis::RedisResult<()> {
    let n = &s.names;
    let wanted: HashSet<String> = s.wanted.lock().map(|w| w.clone()).unwrap_or_default();
    let add: Vec<String> = wanted.difference(subscribed).cloned().collect();
    let remove: Vec<String> = subscribed.difference(&wanted).cloned().collect();
    for ws in add {
        sub.subscribe(n.ws(&ws)).await?;
        subscribed.insert(ws);
    }
    for ws in remove {
        sub.unsubscribe(n.ws(&ws)).await?;
        subscribed.remove(&ws);
    }
    let reload: Vec<String> = s
        .reload
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default();
    for node in reload {
        let _alive = reload_node(s, cmd, &node).await?;
    }
    Ok(())
}
