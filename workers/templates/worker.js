// The two halves of an app that runs in a module web worker (web-worker, web-python).
//
// In the worker (`__rhizoWorkerConsole()`, called first): console output and uncaught
// errors are posted to the page, so the session's logs show what the app printed.
// In the page (`__rhizoHostWorker(source, name, label)`): starts the worker from `source`
// and relays its messages: console lines as `[label] …`, errors as page errors, and the
// start-up state (`templates/state.js`).
function __rhizoWorkerConsole() {
  for (const level of ["log", "info", "warn", "error", "debug"]) {
    const orig = console[level].bind(console);
    console[level] = (...args) => {
      orig(...args);
      try { postMessage({ rhizo: "console", level, args: args.map((a) => typeof a === "string" ? a : JSON.stringify(a)) }); } catch (_) {}
    };
  }
  self.addEventListener("unhandledrejection", (e) => postMessage({ rhizo: "error", message: String(e.reason && e.reason.stack || e.reason) }));
  self.addEventListener("error", (e) => postMessage({ rhizo: "error", message: String(e.message) }));
}

function __rhizoHostWorker(source, name, label) {
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  const worker = new Worker(url, { type: "module", name });
  worker.onmessage = (e) => {
    const m = e.data || {};
    if (m.rhizo === "console") console[m.level](`[${label}]`, ...m.args);
    else if (m.rhizo === "state") globalThis.__rhizoAppState = { state: m.state };
    else if (m.rhizo === "error") reportError(new Error(`${name}: ${m.message}`));
  };
  worker.onerror = (e) => reportError(new Error(`${name}: ${e.message || "failed to start"}`));
  globalThis.appWorker = worker;
  return worker;
}
