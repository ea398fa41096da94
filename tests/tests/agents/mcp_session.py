"""One MCP session with `portctl mcp`, driven by the official Python SDK.

Usage: python mcp_session.py CONFIG_JSON

CONFIG_JSON names the portctl binary, the daemon's socket, the project
directory to start the server in, and the ports to use. The script lists
the tools, calls each one as an agent would (and some the way the CLI
refuses), starts a web server with the environment the `lease` tool
returned (in a session of its own, as an agent's shell would leave it
running), then ends the session by closing the server's stdin. It prints
one JSON object: what each call returned, and the pids the test must
check. It asserts nothing itself: the Rust test does.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def summary(result):
    """A tool result as the test reads it."""
    return {
        "is_error": bool(result.is_error),
        "structured": result.structured_content,
        "text": [c.text for c in result.content if getattr(c, "text", None) is not None],
    }


def note_pid(config, name, pid):
    """Tells the test, at once, which process to clean up if it fails."""
    with open(os.path.join(config["pid_dir"], name + ".pid"), "w") as f:
        f.write(str(pid))


def start_server(config, name, leased):
    """A web server on the leased port with the lease's environment, in a
    session of its own; its pid is noted at once."""
    env = dict(os.environ)
    env.update(leased["env"])
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(leased["port"])],
        env=env,
        cwd=config["project"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    note_pid(config, name, server.pid)
    return server


async def session(config):
    env = {
        "PORTD_SOCKET": config["socket"],
        "PORTD_NO_AUTOSTART": "1",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    server = StdioServerParameters(
        command=config["portctl"], args=["mcp"], env=env, cwd=config["project"]
    )
    out = {"calls": {}, "client_pid": os.getpid()}
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write) as client:
            init = await client.initialize()
            out["server"] = {
                "name": init.server_info.name,
                "version": init.server_info.version,
                "instructions": init.instructions,
            }
            listed = await client.list_tools()
            out["tools"] = {
                t.name: {
                    "description": t.description,
                    "input_schema": t.input_schema,
                    "output_schema": t.output_schema,
                }
                for t in listed.tools
            }

            async def call(label, tool, arguments):
                result = await client.call_tool(tool, arguments)
                out["calls"][label] = summary(result)
                return result.structured_content

            free, held, tied = config["free_port"], config["held_port"], config["tied_port"]
            lease = await call("lease", "lease", {"name": "api", "port": free})
            await call("lease_again", "lease", {"name": "api"})
            await call("lease_taken", "lease", {"port": held})
            await call("lease_kill_next", "lease", {"port": free, "next": True, "kill": True})
            await call("lease_bad_range", "lease", {"range": "9-8"})
            await call("lease_tied", "lease", {"port": tied, "owner_pid": config["tied_owner"]})
            await call("list", "list", {})
            await call("who", "who", {"port": held})
            await call("who_nothing", "who", {"port": config["idle_port"]})
            await call("port", "port", {"name": "api"})
            await call("port_unknown", "port", {"name": "nobody"})
            await call("url", "url", {"name": "api"})
            await call("url_unknown", "url", {"name": "nobody"})
            await call("env", "env", {"name": "api"})
            await call("env_project", "env", {"project_names": True})
            await call("env_none", "env", {})
            # This client is the MCP server's parent: a listener of its own
            # is protected from the server's kill, as a CLI caller's
            # ancestors are from portctl kill.
            ancestor = socket.socket()
            ancestor.bind(("127.0.0.1", config["ancestor_port"]))
            ancestor.listen()
            await call("kill_ancestor", "kill", {"port": config["ancestor_port"], "force": True})
            ancestor.close()

            # The agent starts its dev server with the lease's environment,
            # detached, as a shell tool call would leave it.
            web = start_server(config, "web", lease)
            out["server_pid"] = web.pid
            await call("wait", "wait", {"port": lease["port"], "http": "/", "timeout": "20s"})
            await call("wait_timeout", "wait", {"port": config["idle_port"], "timeout": "300ms"})

            # A server of its own, leased and then stopped through the tools.
            second = await call("lease_second", "lease", {"port": config["second_port"]})
            killed = start_server(config, "killed", second)
            out["killed_pid"] = killed.pid
            await call("wait_second", "wait", {"port": second["port"], "timeout": "20s"})
            await call("release_second_keep", "release", {"port": second["port"], "keep": True})
            await call("kill", "kill", {"port": second["port"], "grace": "2s"})
            killed.wait(timeout=20)
            out["killed_status"] = killed.returncode
            await call("release_unknown", "release", {"name": "nobody"})
            out["session_ended_at"] = time.time()
    return out


def main():
    config = json.loads(sys.argv[1])
    out = asyncio.run(session(config))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
