"""Runs one startup function of `rhizo serve --startup-functions` (src/startup.rs).

Started by the server once it is bound as `python -c <boot> <module_or_file.py:function>`
with this program in RHIZO_STARTUP_RUNNER, and RHIZO_STARTUP_SERVER_URL and
RHIZO_STARTUP_TOKEN (a root token) in the environment. It connects to the `public` workspace with hypha-rpc, awaits
`function(api)`, then prints the line RHIZO_STARTUP_DONE and stays connected, so that the
services the function registered live as long as the server: it leaves when its standard
input closes (the server stopping, or dying). A failure before that line is printed
with its traceback on standard error, and the exit code is 1.
"""

import asyncio
import importlib
import importlib.util
import inspect
import os
import sys
import traceback

DONE = "RHIZO_STARTUP_DONE"


def load_function(entry):
    """The callable named by `module_or_file.py:function`."""
    target, sep, name = entry.rpartition(":")
    if not sep or not target or not name:
        raise ValueError(f"{entry!r}: expected module_or_file.py:function")
    # Modules next to the user's file, or in the server's working directory, import.
    sys.path.insert(0, os.getcwd())
    if target.endswith(".py"):
        path = os.path.abspath(target)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{entry!r}: no such file {path}")
        sys.path.insert(0, os.path.dirname(path))
        module_name = "rhizo_startup_" + os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    function = getattr(module, name, None)
    if not callable(function):
        raise AttributeError(f"{entry!r}: {target} has no function {name!r}")
    return function


async def wait_for_stdin_eof():
    """Returns once standard input is closed (read in a thread: works on any loop)."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.buffer.read)


async def main(entry):
    from hypha_rpc import connect_to_server

    # Neither the user's module nor the processes it starts see the root token.
    server_url = os.environ.pop("RHIZO_STARTUP_SERVER_URL")
    token = os.environ.pop("RHIZO_STARTUP_TOKEN")
    function = load_function(entry)
    api = await connect_to_server(
        {"server_url": server_url, "workspace": "public", "token": token}
    )
    try:
        result = function(api)
        if inspect.isawaitable(result):
            await result
        print(DONE, flush=True)
        await wait_for_stdin_eof()
    finally:
        try:
            await api.disconnect()
        except Exception:  # the server may already be gone
            pass


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: startup_runner module_or_file.py:function", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(main(sys.argv[1]))
    except KeyboardInterrupt:
        sys.exit(0)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        sys.exit(1)
    sys.exit(0)
