# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""inferops healer daemon (issue 14): python3 healerd.py /etc/inferops/healer.json

Standard library only. The decision is module_utils/_healer.py, installed beside this file; this
file only observes (probe, metrics, the ranks' engine states), acts (stop and start the ranks) and
serves the healer port:

  GET  /health   supervisor: 200 while the replica serves (phase ready), else 503; agent: 200
  GET  /state    JSON: role, phase, generation, status line, this rank's engine (and ?log=1 its
                 first fatal error)
  POST /control  an HMAC-signed {"action": "stop"|"start", "generation": N, "ts": T} (agents)

The supervisor (on the head) keeps its state in <state_dir>/state.json, the agent its generation in
<state_dir>/agent.json; neither writes any file Ansible manages.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _day2  # the router's worker list, as roles/router reads it
import _healer


def log(message: str) -> None:
    print(message, flush=True)


def run(argv: list[str], timeout: float = 120) -> tuple[int, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 125, str(exc)
    return proc.returncode, proc.stdout + proc.stderr


def read_text(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


class Rank:
    """This node's engine: its state, its first fatal error, stop and start."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.runtime = spec["runtime"]
        self.lock = threading.Lock()

    def state(self, with_log: bool = False) -> dict:
        rc, out = run(_healer.state_command(self.runtime), timeout=20)
        state = _healer.parse_state(self.runtime, rc, out)
        if with_log or not state["active"]:
            state["fatal"] = self.fatal(state["id"])
        return state

    def fatal(self, engine_id: str | None) -> str | None:
        rc, out = run(_healer.log_command(self.runtime, engine_id), timeout=30)
        return _healer.first_fatal_error(out) if rc == 0 else None

    def stop(self) -> None:
        with self.lock:
            for argv in _healer.control_commands(self.runtime, "stop"):
                run(argv, timeout=self.spec["stop_timeout"] + 30)
            self._drain()
            self._clear_shm()

    def start(self) -> dict:
        with self.lock:
            for argv in _healer.control_commands(self.runtime, "start"):
                rc, out = run(argv, timeout=120)
                if rc != 0 and "reset-failed" not in argv:
                    raise RuntimeError(f"{' '.join(argv)}: rc {rc}: {out.strip()[-300:]}")
        return self.state()

    def _drain(self) -> None:
        """systemd: wait until no process of the engine user remains (a left-over worker holds memory,
        cores and ports)."""
        if self.runtime["kind"] != "systemd":
            return
        deadline = time.monotonic() + self.spec["stop_timeout"]
        while time.monotonic() < deadline:
            rc, _out = run(["pgrep", "--uid", self.runtime["user"]], timeout=10)
            if rc == 1:
                return
            time.sleep(0.5)
        log(f"processes of {self.runtime['user']} still run {self.spec['stop_timeout']} s after the stop")

    def _clear_shm(self) -> None:
        """docker with the host's IPC namespace: the dead engine's shared-memory segments stay in
        /dev/shm (a systemd unit's RemoveIPC=yes does this for the native runtime)."""
        for pattern in self.runtime.get("shm_patterns", []):
            for path in Path("/dev/shm").glob(pattern):
                with contextlib.suppress(OSError):
                    path.unlink()


class Healer:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.rank = Rank(spec)
        self.key = Path(spec["key_file"]).read_bytes().strip()
        self.state_dir = Path(spec["state_dir"])
        self.agent_file = self.state_dir / "agent.json"
        self.state_file = self.state_dir / "state.json"
        agent = json.loads(read_text(str(self.agent_file)) or "{}")
        self.generation = int(agent.get("generation", 0))
        self.supervisor: _healer.Supervisor | None = None
        self.router_member: bool | None = None  # unknown at start: the first step syncs it
        if spec["role"] == "supervisor":
            saved = json.loads(read_text(str(self.state_file)) or "null")
            self.supervisor = _healer.Supervisor(spec, saved, time.time())
            self.generation = self.supervisor.state["generation"]

    # -- both roles
    def paused(self) -> bool:
        return _healer.pause_active(read_text(str(self.state_dir / "paused")), time.time())

    def describe(self, with_log: bool) -> dict:
        answer = {
            "role": self.spec["role"],
            "host": self.spec["host"],
            "replica": self.spec["replica"],
            "generation": self.generation,
            "paused": self.paused(),
            "engine": self.rank.state(with_log),
        }
        if self.supervisor:
            answer["state"] = self.supervisor.state
            answer["status"] = _healer.status_line(self.supervisor.state, answer["paused"])
        return answer

    def control(self, body: bytes, signature: str) -> dict:
        message = _healer.check_message(self.key, body, signature, time.time(), self.generation)
        generation = int(message["generation"])
        log(f"generation {generation}: {message['action']} (asked by the supervisor)")
        if message["action"] == "stop":
            self.rank.stop()
            state = {"active": False}
        else:
            self.rank.stop()  # a rank that a reboot started meanwhile never joins the new group
            state = self.rank.start()
        self.generation = generation
        write_json(self.agent_file, {"generation": generation, "at": time.time()})
        return {"ok": True, "engine": state}

    # -- supervisor
    def _agent(self, rank: dict, path: str, body: dict | None = None, timeout: float = 10) -> dict:
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body, sort_keys=True).encode()
            headers = {"Content-Type": "application/json", "X-Inferops-Signature": _healer.sign(self.key, data)}
        request = urllib.request.Request(rank["url"] + path, data=data, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return json.load(resp)

    def _rank_states(self, with_log: bool = False) -> dict:
        def one(rank: dict) -> tuple[str, dict]:
            if rank["host"] == self.spec["host"]:
                return rank["host"], self.rank.state(with_log)
            try:
                return rank["host"], self._agent(rank, "/state?log=1" if with_log else "/state", timeout=15)["engine"]
            except (OSError, ValueError, KeyError) as exc:
                # an agent that does not answer (its node reboots): unknown, not down; the probe decides
                return rank["host"], {"active": True, "id": None, "state": f"unreachable ({exc})"}

        with ThreadPoolExecutor(max_workers=len(self.spec["ranks"])) as pool:
            return dict(pool.map(one, self.spec["ranks"]))

    def _api_key(self) -> str | None:
        probe = self.spec["probe"]
        if not probe.get("secrets_file"):
            return None
        values = _healer.read_env_file(read_text(probe["secrets_file"]) or "")
        return next((values[n] for n in probe["key_names"] if values.get(n)), None)

    def probe(self) -> tuple[bool, str | None, float | None]:
        probe = self.spec["probe"]
        key = self._api_key()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        body = json.dumps({"model": probe["model"], "prompt": "ping", "max_tokens": 1, "temperature": 0}).encode()
        request = urllib.request.Request(probe["url"] + "/v1/completions", data=body, headers=headers)
        # https heads: verified with the plan's CA (never unverified)
        context = ssl.create_default_context(cafile=probe.get("ca_file")) if probe["url"].startswith("https") else None
        status, text, error = None, "", None
        try:
            with urllib.request.urlopen(request, timeout=probe["timeout"], context=context) as resp:
                status, text = resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode(errors="replace")
        except (OSError, ValueError) as exc:
            error = f"no answer: {exc}"
        ok, reason = _healer.probe_verdict(status, text, error)
        tokens = None
        try:
            metrics = urllib.request.Request(probe["url"] + "/metrics", headers=headers)
            with urllib.request.urlopen(metrics, timeout=5, context=context) as resp:
                tokens = _healer.token_count(resp.read().decode(errors="replace"), probe["token_counters"])
        except (OSError, ValueError):
            pass
        return ok, reason, tokens

    def restart_replica(self) -> None:
        sup = self.supervisor
        generation = sup.state["generation"] + 1
        log(f"generation {generation}: restarting every rank of replica {self.spec['replica']}")

        def send(rank: dict, action: str) -> dict:
            if rank["host"] == self.spec["host"]:
                if action == "stop":
                    self.rank.stop()
                    return {"active": False}
                self.rank.stop()
                return self.rank.start()
            message = {"action": action, "generation": generation, "ts": time.time()}
            deadline = time.monotonic() + (self.spec["stop_timeout"] + 120 if action == "start" else 30)
            while True:  # a rebooting node's agent answers once its node is back
                try:
                    return self._agent(rank, "/control", message, timeout=self.spec["stop_timeout"] + 150)["engine"]
                except (OSError, ValueError) as exc:
                    if time.monotonic() > deadline:
                        if action == "stop":
                            return {"active": False, "state": f"unreachable ({exc})"}
                        raise RuntimeError(f"{rank['host']}: the agent did not answer: {exc}") from None
                    time.sleep(2)
                    message["ts"] = time.time()

        try:
            # the engine's order (roles/inference_server/tasks/service.yml): every rank stops, then all start
            with ThreadPoolExecutor(max_workers=len(self.spec["ranks"])) as pool:
                list(pool.map(lambda r: send(r, "stop"), self.spec["ranks"]))
                states = list(pool.map(lambda r: send(r, "start"), self.spec["ranks"]))
                started = {rank["host"]: state for rank, state in zip(self.spec["ranks"], states)}  # noqa: B905
        except RuntimeError as exc:
            log(f"generation {generation}: restart failed: {exc}")
            sup.restart_failed(time.time(), str(exc))
            return
        self.generation = generation
        write_json(self.agent_file, {"generation": generation, "at": time.time()})
        sup.restarted(time.time(), {h: s.get("id") for h, s in started.items()})
        log(f"generation {generation}: every rank started")

    def sync_router(self) -> None:
        """Take the replica out of the router when it stops serving, put it back once it serves (the router's
        own /health check would keep a dead vLLM: its /health answers 200)."""
        router = self.spec.get("router")
        want = _healer.in_router(self.supervisor.state)
        if not router or want == self.router_member or self.paused():
            return
        key = self._api_key()
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        try:
            with urllib.request.urlopen(
                urllib.request.Request(router["url"] + "/workers", headers=headers), timeout=10
            ) as resp:
                ids = _day2.router_worker_ids(json.load(resp), router["worker"])
            if want and not ids:
                body = json.dumps({"url": router["worker"]}).encode()
                urllib.request.urlopen(
                    urllib.request.Request(router["url"] + "/workers", data=body, headers=headers), timeout=10
                ).close()
            for worker in [] if want else ids:
                urllib.request.urlopen(
                    urllib.request.Request(f"{router['url']}/workers/{worker}", headers=headers, method="DELETE"),
                    timeout=10,
                ).close()
        except (OSError, ValueError) as exc:
            log(f"router {router['url']}: could not {'add' if want else 'remove'} {router['worker']}: {exc}")
            return
        log(f"router {router['url']}: {'added' if want else 'removed'} {router['worker']}")
        self.router_member = want

    def loop(self) -> None:
        sup = self.supervisor
        interval = self.spec["probe"]["interval"]
        while True:
            began = time.monotonic()
            try:
                self.step()
                self.sync_router()
            except Exception as exc:
                log(f"step failed: {exc!r}")
            write_json(self.state_file, sup.state)
            time.sleep(max(0.0, interval - (time.monotonic() - began)))

    def step(self) -> None:
        sup = self.supervisor
        phase = sup.state["phase"]
        if phase == "gave_up":
            ranks = self._rank_states()
            sup.observe(time.time(), {"probe_ok": False, "ranks": ranks, "paused": self.paused()})
            return
        ok, error, tokens = self.probe()
        ranks = self._rank_states()
        decision = sup.observe(
            time.time(), {"probe_ok": ok, "error": error, "tokens": tokens, "ranks": ranks, "paused": self.paused()}
        )
        if sup.state["phase"] != phase:
            log(f"{phase} -> {sup.state['phase']}: {_healer.status_line(sup.state)}")
            if sup.state["phase"] in ("restarting", "gave_up"):
                errors = {h: s.get("fatal") for h, s in self._rank_states(with_log=True).items() if s.get("fatal")}
                sup.note_errors(errors)
                log(f"first fatal errors: {errors or 'none found in the logs'}")
        if decision == "restart":
            self.restart_replica()


class Handler(BaseHTTPRequestHandler):
    healer: Healer

    def log_message(self, fmt: str, *args: object) -> None:  # quiet: the journal keeps decisions only
        return

    def _send(self, code: int, data: dict) -> None:
        body = json.dumps(data, sort_keys=True).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        healer = self.healer
        if self.path == "/health":
            if healer.supervisor:
                ready = healer.supervisor.state["phase"] == "ready"
                self._send(200 if ready else 503, {"phase": healer.supervisor.state["phase"]})
            else:
                self._send(200, {"role": "agent"})
        elif self.path.split("?")[0] == "/state":
            self._send(200, healer.describe(with_log="log=1" in self.path))
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path != "/control":
            self._send(404, {"error": "not found"})
            return
        body = self.rfile.read(min(int(self.headers.get("Content-Length", 0)), 4096))
        try:
            self._send(200, self.healer.control(body, self.headers.get("X-Inferops-Signature", "")))
        except ValueError as exc:
            log(f"refused a control message from {self.client_address[0]}: {exc}")
            self._send(403, {"error": str(exc)})
        except RuntimeError as exc:
            self._send(500, {"error": str(exc)})


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    healer = Healer(spec)
    Handler.healer = healer
    server = ThreadingHTTPServer(("0.0.0.0", spec["port"]), Handler)
    log(f"inferops healer: {spec['role']} of replica {spec['replica']} on port {spec['port']}")
    if healer.supervisor:
        threading.Thread(target=healer.loop, daemon=True).start()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
