// The app's start-up state, which the browser worker waits for after the page has loaded:
// "loading" until the app's script has run ("started"); "failed" on an uncaught error or
// rejection before that (from the page, or relayed from the app's web worker).
globalThis.__rhizoAppState = { state: "loading" };
function __rhizoStartFailed(error) {
  if (globalThis.__rhizoAppState.state === "loading") {
    globalThis.__rhizoAppState = { state: "failed", error: String(error) };
  }
}
addEventListener("error", (e) => __rhizoStartFailed(e.error && e.error.stack || e.message));
addEventListener("unhandledrejection", (e) => __rhizoStartFailed(e.reason && e.reason.stack || e.reason));
