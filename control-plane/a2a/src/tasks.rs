//! The A2A tasks of this instance, in memory and bounded (workspace-api.md §8.1, A2A line).
//!
//! Each task belongs to one agent (the full id of the service that ran it); another agent's
//! endpoint does not see it. The store keeps at most [`MAX_TASKS`] tasks and about
//! [`MAX_BYTES`] of task JSON; past either bound the oldest tasks are evicted (a running
//! task that is evicted still finishes, its stream is unaffected, but `tasks/get` no longer
//! finds it). Tasks are not shared between instances and do not survive a restart.
//!
//! The lock is a std `Mutex`, never held across an `.await`.

use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, Notify};

/// At most this many tasks are kept.
pub const MAX_TASKS: usize = 1000;

/// At most about this many bytes of task JSON are kept (64 MiB).
pub const MAX_BYTES: usize = 64 * 1024 * 1024;

/// How many events a resubscriber may lag behind before it misses some.
const EVENT_BUFFER: usize = 64;

struct Entry {
    agent: String,
    task: Value,
    size: usize,
    /// Woken by `tasks/cancel` while the task runs.
    cancel: Arc<Notify>,
    /// The task's events (`status-update` / `artifact-update`), for `tasks/resubscribe`;
    /// dropped when the task ends, so that resubscribers' streams end too.
    events: Option<broadcast::Sender<Value>>,
}

#[derive(Default)]
struct Inner {
    tasks: HashMap<String, Entry>,
    order: VecDeque<String>,
    bytes: usize,
}

/// What [`TaskStore::cancel`] found.
#[derive(Debug, PartialEq)]
pub enum Cancel {
    /// The task was running and is now `canceled`; its new state.
    Canceled(Value),
    /// The task already ended in this state.
    Terminal(String),
    /// No such task for this agent.
    NotFound,
}

/// The handles a running task's executor keeps.
pub struct Running {
    /// Notified when the task is canceled.
    pub cancel: Arc<Notify>,
    /// Where its events go to resubscribers.
    pub events: broadcast::Sender<Value>,
}

/// The bounded task store (see the module docs).
#[derive(Default)]
pub struct TaskStore {
    inner: Mutex<Inner>,
}

// === impl TaskStore ===

impl TaskStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `task` (its `id`) for `agent`, evicting the oldest tasks past the bounds.
    pub fn insert(&self, agent: &str, task: Value) -> Running {
        let id = task["id"].as_str().unwrap_or_default().to_owned();
        let size = json_size(&task);
        let cancel = Arc::new(Notify::new());
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let mut inner = self.lock();
        if let Some(old) = inner.tasks.remove(&id) {
            inner.bytes -= old.size;
            inner.order.retain(|k| k != &id);
        }
        inner.tasks.insert(
            id.clone(),
            Entry {
                agent: agent.to_owned(),
                task,
                size,
                cancel: cancel.clone(),
                events: Some(events.clone()),
            },
        );
        inner.order.push_back(id);
        inner.bytes += size;
        while inner.order.len() > MAX_TASKS || (inner.bytes > MAX_BYTES && inner.order.len() > 1) {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(e) = inner.tasks.remove(&oldest) {
                inner.bytes -= e.size;
            }
        }
        Running { cancel, events }
    }

    /// The task `id` of `agent`, if kept.
    pub fn get(&self, agent: &str, id: &str) -> Option<Value> {
        let inner = self.lock();
        inner
            .tasks
            .get(id)
            .filter(|e| e.agent == agent)
            .map(|e| e.task.clone())
    }

    /// Replaces the stored state of task `id` by `task`, unless the task was canceled
    /// meanwhile (or evicted). Returns whether it was stored.
    pub fn update(&self, id: &str, task: &Value) -> bool {
        self.store(id, task, false)
    }

    /// [`TaskStore::update`] with the task's final state; from then on `tasks/resubscribe`
    /// finds it ended. Returns the state kept: `task`, or the stored one when the task was
    /// canceled meanwhile.
    pub fn finish(&self, id: &str, task: &Value) -> Value {
        if self.store(id, task, true) {
            return task.clone();
        }
        let inner = self.lock();
        inner
            .tasks
            .get(id)
            .map(|e| e.task.clone())
            .unwrap_or_else(|| task.clone())
    }

    fn store(&self, id: &str, task: &Value, last: bool) -> bool {
        let mut inner = self.lock();
        let Some(e) = inner.tasks.get_mut(id) else {
            return false;
        };
        if last {
            e.events = None;
        }
        if e.task["status"]["state"] == "canceled" {
            return false;
        }
        let size = json_size(task);
        let old = std::mem::replace(&mut e.size, size);
        e.task = task.clone();
        inner.bytes = inner.bytes - old + size;
        true
    }

    /// Cancels task `id` of `agent` if it is still running: its state becomes `canceled`
    /// and its executor is woken.
    pub fn cancel(&self, agent: &str, id: &str) -> Cancel {
        let mut inner = self.lock();
        let Some(e) = inner.tasks.get_mut(id).filter(|e| e.agent == agent) else {
            return Cancel::NotFound;
        };
        let state = e.task["status"]["state"].as_str().unwrap_or("").to_owned();
        if crate::jsonrpc::is_terminal(&state) {
            return Cancel::Terminal(state);
        }
        e.task["status"] =
            serde_json::json!({"state": "canceled", "timestamp": crate::jsonrpc::now()});
        e.cancel.notify_one();
        Cancel::Canceled(e.task.clone())
    }

    /// Task `id` of `agent` and, while it runs, a receiver of its further events.
    pub fn subscribe(
        &self,
        agent: &str,
        id: &str,
    ) -> Option<(Value, Option<broadcast::Receiver<Value>>)> {
        let inner = self.lock();
        let e = inner.tasks.get(id).filter(|e| e.agent == agent)?;
        let running =
            !crate::jsonrpc::is_terminal(e.task["status"]["state"].as_str().unwrap_or(""));
        let events = e.events.as_ref().filter(|_| running).map(|s| s.subscribe());
        Some((e.task.clone(), events))
    }

    /// How many tasks are kept.
    pub fn len(&self) -> usize {
        self.lock().tasks.len()
    }

    /// Whether no task is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn json_size(v: &Value) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(id: &str, state: &str) -> Value {
        json!({"id": id, "contextId": "c", "status": {"state": state}})
    }

    #[test]
    fn the_oldest_tasks_are_evicted() {
        let s = TaskStore::default();
        for i in 0..MAX_TASKS + 5 {
            s.insert("a", task(&i.to_string(), "completed"));
        }
        assert_eq!(s.len(), MAX_TASKS);
        assert!(s.get("a", "0").is_none());
        assert!(s.get("a", &(MAX_TASKS + 4).to_string()).is_some());
    }

    #[test]
    fn tasks_are_per_agent_and_cancel_only_while_running() {
        let s = TaskStore::default();
        s.insert("a", task("t", "working"));
        assert!(s.get("b", "t").is_none());
        assert_eq!(s.cancel("b", "t"), Cancel::NotFound);
        assert!(matches!(s.cancel("a", "t"), Cancel::Canceled(_)));
        assert_eq!(s.cancel("a", "t"), Cancel::Terminal("canceled".into()));
        // A canceled task keeps its state when the executor finishes later.
        assert!(!s.update("t", &task("t", "completed")));
        assert_eq!(s.get("a", "t").unwrap()["status"]["state"], "canceled");
    }
}
