"""rhizo's kernel bridge: one Jupyter kernel (ipykernel) driven over JSON lines.

Run by the conda-jupyter-kernel worker (workers/src/conda/kernel.rs) with the Python of
the session's environment, as ``python bridge.py <cwd> <startup_timeout_s>``. It starts
the kernel with jupyter_client's KernelManager in <cwd> and speaks the Jupyter messaging
protocol to it; with the worker it speaks one JSON object per line:

worker -> bridge (stdin), one request at a time:
  {"id": n, "code": "...", "timeout": seconds}   run code in the kernel
  {"id": n, "shutdown": true}                    shut the kernel down and exit
bridge -> worker (the original stdout; fd 1 is pointed at stderr, so nothing the kernel
or a library prints can corrupt the stream):
  {"ready": true, "kernel_pid": pid}             the kernel answers (first line), or
  {"fatal": "why"}                               it could not be started (then exit 1)
  {"id": n, "msg": {msg_type, header, parent_header, metadata, content}}
                                                 each iopub message of request n, in order
  {"id": n, "reply": {...}}                      the end of request n: the execute_reply
                                                 content, or {status: "error", ename:
                                                 "TimeoutError" | "KernelDied", ...}
  {"event": "kernel_died", "exit_code": c}       the kernel process is gone (then exit 3)

A request that runs past its timeout interrupts the kernel (SIGINT, a KeyboardInterrupt in
the cell) so that the session stays usable. End of stdin shuts the kernel down at once.
"""

import json
import os
import queue
import sys
import threading
import time

PROTO = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
os.dup2(2, 1)
sys.stdout = sys.stderr

# How often a waiting bridge checks that the kernel process is still there, seconds.
POLL = 0.2
# After an interrupt, how long to wait for the kernel to become idle again, seconds.
DRAIN = 5.0


def send(obj):
    PROTO.write(json.dumps(obj, default=str) + "\n")
    PROTO.flush()


def exit_code(km):
    try:
        return km.provisioner.process.poll()
    except Exception:  # noqa: BLE001 - only informative
        return None


def died(km, rid=None):
    code = exit_code(km)
    if rid is not None:
        send({"id": rid, "reply": {
            "status": "error",
            "ename": "KernelDied",
            "evalue": f"the kernel process exited (exit code {code}) while running this code",
            "traceback": [],
        }})
    send({"event": "kernel_died", "exit_code": code})
    sys.exit(3)


def read_stdin(requests):
    for line in sys.stdin:
        line = line.strip()
        if line:
            try:
                requests.put(json.loads(line))
            except ValueError:
                print(f"kernel bridge: ignoring a malformed request {line[:200]!r}", file=sys.stderr)
    requests.put(None)


def forward(rid, msg):
    send({"id": rid, "msg": {
        "msg_type": msg.get("msg_type") or msg["header"].get("msg_type"),
        "header": msg.get("header", {}),
        "parent_header": msg.get("parent_header", {}),
        "metadata": msg.get("metadata", {}),
        "content": msg.get("content", {}),
    }})


def is_idle_of(msg, msg_id):
    return (
        msg.get("parent_header", {}).get("msg_id") == msg_id
        and msg.get("msg_type") == "status"
        and msg.get("content", {}).get("execution_state") == "idle"
    )


def shell_reply(km, kc, msg_id, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_shell_msg(timeout=POLL)
        except queue.Empty:
            if not km.is_alive():
                return None
            continue
        if msg.get("parent_header", {}).get("msg_id") == msg_id:
            return msg.get("content", {})
    return None


def execute(km, kc, req):
    rid = req["id"]
    timeout = float(req.get("timeout") or 30.0)
    msg_id = kc.execute(req.get("code", ""), store_history=True, allow_stdin=False)
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            km.interrupt_kernel()
            drain_until = time.monotonic() + DRAIN
            while time.monotonic() < drain_until:
                try:
                    if is_idle_of(kc.get_iopub_msg(timeout=POLL), msg_id):
                        break
                except queue.Empty:
                    if not km.is_alive():
                        died(km, rid)
            send({"id": rid, "reply": {
                "status": "error",
                "ename": "TimeoutError",
                "evalue": f"Execution timed out after {timeout:g} seconds (the kernel was interrupted)",
                "traceback": [],
            }})
            return
        try:
            msg = kc.get_iopub_msg(timeout=POLL)
        except queue.Empty:
            if not km.is_alive():
                died(km, rid)
            continue
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        forward(rid, msg)
        if is_idle_of(msg, msg_id):
            break
    reply = shell_reply(km, kc, msg_id, max(deadline - time.monotonic(), 5.0))
    if reply is None:
        if not km.is_alive():
            died(km, rid)
        reply = {"status": "error", "ename": "KernelError",
                 "evalue": "the kernel sent no execute_reply", "traceback": []}
    send({"id": rid, "reply": reply})


def shutdown(km, kc, now):
    try:
        kc.stop_channels()
    except Exception:  # noqa: BLE001 - shutting down anyway
        pass
    try:
        km.shutdown_kernel(now=now)
    except Exception:  # noqa: BLE001
        pass


def main():
    cwd, startup_timeout = sys.argv[1], float(sys.argv[2])
    km = None
    try:
        from jupyter_client import KernelManager

        km = KernelManager(kernel_name="python3")
        km.start_kernel(cwd=cwd, env=dict(os.environ))
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=startup_timeout)
    except BaseException as e:  # noqa: BLE001 - reported to the worker
        send({"fatal": f"{type(e).__name__}: {e}"})
        if km is not None:
            try:
                km.shutdown_kernel(now=True)
            except Exception:  # noqa: BLE001
                pass
        return 1
    send({"ready": True, "kernel_pid": getattr(km.provisioner, "pid", None)})
    requests = queue.Queue()
    threading.Thread(target=read_stdin, args=(requests,), daemon=True).start()
    while True:
        try:
            req = requests.get(timeout=POLL * 2)
        except queue.Empty:
            if not km.is_alive():
                died(km)
            continue
        if req is None:
            shutdown(km, kc, now=True)
            return 0
        if req.get("shutdown"):
            shutdown(km, kc, now=False)
            send({"id": req.get("id"), "reply": {"status": "ok"}})
            return 0
        if "code" in req:
            execute(km, kc, req)
        else:
            send({"id": req.get("id"), "reply": {
                "status": "error", "ename": "BridgeError",
                "evalue": "unknown request", "traceback": []}})


if __name__ == "__main__":
    sys.exit(main())
