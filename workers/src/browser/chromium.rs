//! The browser worker's one shared headless Chromium (apps-workers.md §4.7), driven over the
//! DevTools protocol with `chromiumoxide`. Launched on first use with a private profile
//! directory (removed when it exits); every session gets its own browser context (cookies,
//! storage and cache isolated) and page.
//!
//! When the browser process exits — crashed or killed — the CDP connection ends, the
//! handler task sees it, [`Chromium::exited`] fires with the generation that died, and the
//! next [`Chromium::get`] launches a new one.

use super::options::BrowserOptions;
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::handler::viewport::Viewport;
use futures_util::StreamExt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, Mutex};

/// How long Chromium may take to print its DevTools address at launch.
const LAUNCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How often the browser process is checked for having exited.
const EXIT_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// `program` if it is a file, else the first match of a bare name on `PATH`.
fn find_executable(program: &std::path::Path) -> Option<PathBuf> {
    if program.components().count() > 1 || program.is_absolute() {
        return program.is_file().then(|| program.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|c| c.is_file())
}

/// Whether process `pid` still runs (exists and is not a zombie).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S …`: the state follows the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// A running browser: the CDP handle, its generation (1 for the first launch) and the
/// profile directory it owns.
pub(crate) struct Live {
    pub(crate) browser: Browser,
    pub(crate) generation: u64,
    profile: PathBuf,
    /// The browser process, when chromiumoxide started it.
    pub(crate) pid: Option<u32>,
}

impl Drop for Live {
    fn drop(&mut self) {
        // The child is killed on drop (chromiumoxide sets kill_on_drop); its profile goes.
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The lazily launched shared browser.
pub(crate) struct Chromium {
    opts: BrowserOptions,
    live: Mutex<Option<Arc<Live>>>,
    generation: std::sync::atomic::AtomicU64,
    /// Generations whose browser has exited.
    exited_tx: mpsc::UnboundedSender<u64>,
}

impl Chromium {
    /// A browser launched on the first [`Chromium::get`]; the receiver yields the
    /// generation of every browser that exits.
    pub(crate) fn new(opts: BrowserOptions) -> (Self, mpsc::UnboundedReceiver<u64>) {
        let (exited_tx, rx) = mpsc::unbounded_channel();
        let c = Chromium {
            opts,
            live: Mutex::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
            exited_tx,
        };
        (c, rx)
    }

    /// The running browser, launching one if there is none (or the last one exited).
    ///
    /// Errors: Chromium cannot be started (not installed, or it exits at once); the
    /// message names the executable and how to point rhizo at another.
    pub(crate) async fn get(&self) -> Result<Arc<Live>, String> {
        let mut slot = self.live.lock().await;
        if let Some(live) = slot.as_ref() {
            return Ok(live.clone());
        }
        let live = Arc::new(self.launch().await?);
        *slot = Some(live.clone());
        Ok(live)
    }

    /// The running browser, if one runs (never launches one).
    pub(crate) async fn current(&self) -> Option<Arc<Live>> {
        self.live.lock().await.clone()
    }

    /// Forgets the browser of `generation` (it exited); a later one is kept.
    pub(crate) async fn forget(&self, generation: u64) {
        let mut slot = self.live.lock().await;
        if slot.as_ref().is_some_and(|l| l.generation == generation) {
            *slot = None;
        }
    }

    /// Whether the browser of `generation` still runs (its process is checked now, not on
    /// the next poll); a dead one is forgotten.
    pub(crate) async fn alive(&self, generation: u64) -> bool {
        let mut slot = self.live.lock().await;
        let alive = slot
            .as_ref()
            .is_some_and(|l| l.generation == generation && l.pid.is_none_or(process_alive));
        if !alive && slot.as_ref().is_some_and(|l| l.generation == generation) {
            *slot = None;
        }
        alive
    }

    /// Closes the browser now (worker shutdown); the next `get` launches a new one.
    pub(crate) async fn close(&self) {
        self.live.lock().await.take();
    }

    /// The process id of the running browser, if one runs (diagnostics and tests).
    pub(crate) async fn pid(&self) -> Option<u32> {
        self.live.lock().await.as_ref().and_then(|l| l.pid)
    }

    async fn launch(&self) -> Result<Live, String> {
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let o = &self.opts;
        let profile = std::env::temp_dir().join(format!("rhizo-browser-{}", uuid::Uuid::new_v4()));
        let executable = find_executable(&o.chromium).ok_or_else(|| {
            format!(
                "Chromium not found at {:?}; install Debian's `chromium` or set --chromium / \
                 RHIZO_CHROMIUM to a Chromium or Chrome executable",
                o.chromium
            )
        })?;
        let mut b = BrowserConfig::builder()
            .chrome_executable(&executable)
            .user_data_dir(&profile)
            .launch_timeout(LAUNCH_TIMEOUT)
            .request_timeout(std::time::Duration::from_secs(60))
            .window_size(o.viewport_width, o.viewport_height)
            .viewport(Viewport {
                width: o.viewport_width,
                height: o.viewport_height,
                device_scale_factor: Some(o.device_scale_factor),
                emulating_mobile: false,
                is_landscape: o.viewport_width >= o.viewport_height,
                has_touch: false,
            })
            .arg("--disable-dev-shm-usage")
            .arg("--site-per-process")
            .arg("--no-first-run")
            .arg("--disable-gpu");
        if o.no_sandbox {
            b = b.no_sandbox();
        }
        if o.disable_web_security {
            b = b.arg("--disable-web-security");
        }
        let config = b
            .build()
            .map_err(|e| format!("browser configuration: {e}"))?;
        let (mut browser, mut handler) = Browser::launch(config).await.map_err(|e| {
            format!(
                "Chromium could not be started from {} ({e}); install Debian's `chromium` \
                 or set --chromium / RHIZO_CHROMIUM to a Chromium or Chrome executable",
                o.chromium.display()
            )
        })?;
        let child = browser.get_mut_child();
        let pid = child.as_ref().and_then(|c| c.inner.id());
        // Chromium's stderr is a pipe nobody else reads: drain it, or a chatty browser
        // blocks once the pipe is full.
        if let Some(stderr) = child.and_then(|c| c.stderr.take()) {
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(stderr.into_inner()).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::trace!(target: "rhizo_workers::browser::chromium", "{line}");
                }
            });
        }
        let once = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let report = {
            let (exited, once) = (self.exited_tx.clone(), once.clone());
            move || {
                if !once.swap(true, std::sync::atomic::Ordering::AcqRel) {
                    tracing::warn!(generation, "the browser process exited");
                    let _ = exited.send(generation);
                }
            }
        };
        let on_end = report.clone();
        tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                match event {
                    Err(chromiumoxide::error::CdpError::Ws(e)) => {
                        tracing::debug!(error = %e, "browser connection lost");
                        break;
                    }
                    Err(e) => tracing::debug!(error = %e, "browser handler"),
                    Ok(()) => {}
                }
            }
            on_end();
        });
        // The CDP socket may stay half-open after a kill: watch the process as well.
        if let Some(pid) = pid {
            let once = once.clone();
            tokio::spawn(async move {
                while !once.load(std::sync::atomic::Ordering::Acquire) {
                    tokio::time::sleep(EXIT_POLL).await;
                    if !process_alive(pid) {
                        report();
                        break;
                    }
                }
            });
        }
        tracing::info!(generation, chromium = %o.chromium.display(), ?pid, "browser launched");
        Ok(Live {
            browser,
            generation,
            profile,
            pid,
        })
    }
}
