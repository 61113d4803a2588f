# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The replica healer's logic (issue 14), pure and stdlib-only.

The same file runs in two places: on the controller, where the plan (``_plan.py``) calls
``read_settings``/``node_spec`` to put ``inferops_node.healer`` in the node spec, and on the nodes,
where the role copies it next to the daemon (``roles/inference_server/files/healerd.py``),
which imports it. It must import nothing but the standard library.

One supervisor per replica runs on its head: it probes a real generation through the head's API,
reads the ranks' engine states from the agents (one per follower), and decides with ``Supervisor``:

    starting --ready probe--> ready --failed probe--> suspect --K failures, tokens flat--> dead
       |  start deadline passed, or a rank down                     rank down / restarted --> dead
       v
     dead --backoff--> restarting (generation + 1: stop every rank, start every rank) --> starting
     dead after give_up_after restarts without reaching ready --> gave_up (until a new engine appears)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

UNIT = "inferops-healer.service"
STATE_DIR = "/var/lib/inferops/healer"
CONFIG_FILE = "/etc/inferops/healer.json"
KEY_FILE = "/etc/inferops/healer.key"
INSTALL_DIR = "/usr/local/lib/inferops-healer"
PAUSE_FILE = f"{STATE_DIR}/paused"

# inventory variable -> (key in the node spec, default, minimum)
SETTINGS = {
    "inferops_healer_probe_interval": ("probe_interval", 5, 1),
    "inferops_healer_probe_timeout": ("probe_timeout", 30, 1),
    "inferops_healer_probe_failures": ("probe_failures", 3, 1),
    "inferops_healer_start_deadline": ("start_deadline", 1800, 10),
    "inferops_healer_backoff_initial": ("backoff_initial", 10, 0),
    "inferops_healer_backoff_max": ("backoff_max", 300, 0),
    "inferops_healer_give_up_after": ("give_up_after", 5, 1),
    "inferops_healer_stable_after": ("stable_after", 120, 0),
    "inferops_healer_stop_timeout": ("stop_timeout", 60, 1),
}
# Every inventory variable the healer's part of the plan reads (the plan step templates only these)
VARIABLES = ("inferops_healer", *SETTINGS)
# The engines' generated-token counters (Prometheus text from the head's /metrics)
TOKEN_COUNTERS = {
    "vllm": ("vllm:generation_tokens_total", "vllm:generation_tokens"),
    "sglang": ("sglang:generation_tokens_total", "sglang:generation_tokens"),
}
# Shared-memory objects a dead engine leaves in the host's IPC namespace (runtime docker, ipc_mode host):
# vLLM's shared-memory broadcast queues and multiprocessing semaphores, torch's shared tensors
SHM_PATTERNS = ("psm_*", "sem.mp-*", "torch_*", "vllm_*")
PHASES = ("starting", "ready", "suspect", "dead", "restarting", "gave_up", "paused")


class SettingsError(ValueError):
    """A bad healer setting: the plan turns it into PlanError(host, variable, message)."""

    def __init__(self, variable: str, message: str) -> None:
        self.variable = variable
        super().__init__(message)


def _bool(variable: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.strip().lower() in ("true", "yes", "on", "1")
    raise SettingsError(variable, f"{value!r} is not a boolean (true or false)")


def read_settings(hv: Mapping[str, Any]) -> dict[str, Any]:
    """The healer settings of one host from its variables (defaults above); enabled false = no healer."""
    enabled = _bool("inferops_healer", hv.get("inferops_healer", True))
    settings: dict[str, Any] = {"enabled": enabled}
    for variable, (key, default, minimum) in SETTINGS.items():
        raw = hv.get(variable, default)
        if isinstance(raw, bool) or not isinstance(raw, (int, str)) or not str(raw).strip().isdigit():
            raise SettingsError(variable, f"{raw!r} is not a whole number of seconds or a count")
        value = int(raw)
        if value < minimum:
            raise SettingsError(variable, f"{value} is below the minimum {minimum}")
        settings[key] = value
    if settings["backoff_max"] < settings["backoff_initial"]:
        raise SettingsError(
            "inferops_healer_backoff_max",
            f"{settings['backoff_max']} is below inferops_healer_backoff_initial ({settings['backoff_initial']})",
        )
    if settings["probe_timeout"] > settings["start_deadline"]:
        raise SettingsError("inferops_healer_probe_timeout", "is longer than inferops_healer_start_deadline")
    return settings


def node_spec(
    settings: Mapping[str, Any], node: Mapping[str, Any], port: int, router: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """inferops_node.healer for one node of the plan (node: the node's plan entry, runtime included).

    Everything the daemon needs is here: the daemon reads this object (written as CONFIG_FILE) and
    derives nothing from elsewhere. None when the healer is off or the node runs no engine."""
    if not settings.get("enabled") or not node.get("argv"):
        return None
    runtime = node["runtime"]
    peers = node["peers"]
    # the agents the supervisor drives: every node of the replica that runs an engine, the head included
    ranks = [
        {"host": p["host"], "address": p["address"], "node_rank": p["node_rank"], "url": _url(p["address"], port)}
        for p in peers
    ]
    if node.get("mode") == "ray":
        ranks = ranks[:1]  # Ray workers run no engine process: the head's engine unit is the replica
    spec: dict[str, Any] = {
        "role": "supervisor" if node["is_head"] else "agent",
        "host": node["host"],
        "replica": node["replica"],
        "node_rank": node["node_rank"],
        "port": port,
        "unit": UNIT,
        "config_file": CONFIG_FILE,
        "key_file": KEY_FILE,
        "state_dir": STATE_DIR,
        "install_dir": INSTALL_DIR,
        "engine": node["engine"],
        "runtime": {
            "kind": runtime["kind"],
            "unit": runtime.get("unit"),
            "container": runtime.get("container"),
            "user": runtime.get("user", "inferops"),
            "shm_patterns": list(SHM_PATTERNS) if runtime["kind"] == "docker" else [],
        },
        "probe": {
            "url": node["api_url"],
            # a head serving HTTPS itself (inferops_tls_*): verified with the CA on the node (None: system store)
            "ca_file": (node.get("tls") or {}).get("ca_file") if str(node["api_url"]).startswith("https") else None,
            "model": node["served_model_name"],
            "secrets_file": runtime.get("secrets_file") if node.get("secret_env") else None,
            "key_names": [n for n in node.get("secret_env", []) if n != "HF_TOKEN"],
            "token_counters": list(TOKEN_COUNTERS.get(node["engine"], ())),
            "interval": settings["probe_interval"],
            "timeout": settings["probe_timeout"],
            "failures": settings["probe_failures"],
        },
        "start_deadline": settings["start_deadline"],
        "backoff": {"initial": settings["backoff_initial"], "max": settings["backoff_max"]},
        "give_up_after": settings["give_up_after"],
        "stable_after": settings["stable_after"],
        "stop_timeout": settings["stop_timeout"],
        "ranks": ranks,
        "router": dict(router) if router and node["is_head"] else None,
    }
    return spec


def replica_spec(head_spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """inferops_plan.replicas[R].healer, from its head's node spec."""
    if head_spec is None:
        return {"enabled": False}
    return {
        "enabled": True,
        "supervisor": head_spec["host"],
        "port": head_spec["port"],
        "url": head_spec["ranks"][0]["url"],
        "unit": head_spec["unit"],
        "agents": [r["host"] for r in head_spec["ranks"][1:]],
    }


def _url(address: str, port: int) -> str:
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


# --- the decision -------------------------------------------------------------------------------


def backoff_delay(restarts: int, initial: int, cap: int) -> int:
    """Seconds to wait before restart number restarts + 1 of a streak: none before the first, then
    initial, 2 x initial, ... up to cap."""
    if restarts <= 0:
        return 0
    return int(min(cap, initial * (2 ** (restarts - 1))))


def new_state(now: float) -> dict[str, Any]:
    return {
        "phase": "starting",
        "since": now,
        "started_at": now,
        "generation": 0,
        "failures": 0,
        "restarts": 0,
        "total_restarts": 0,
        "ready_since": None,
        "last_error": None,
        "errors": {},
        "next_restart_at": None,
        "tokens": None,
        "group": {},
        "gave_up_group": None,
        "history": [],
    }


class Supervisor:
    """The supervisor's decision, pure: ``observe`` takes what the daemon saw and returns what to do.

    An observation is ``{"probe_ok": bool, "error": str | None, "tokens": float | None,
    "ranks": {host: {"active": bool, "id": str | None, "state": str}}, "paused": bool}``.
    The answer is ``None`` (nothing to do), ``"restart"`` (the daemon bumps the generation with
    ``restarted`` after stopping and starting every rank) or ``"gave_up"``."""

    def __init__(self, spec: Mapping[str, Any], state: Mapping[str, Any] | None, now: float) -> None:
        self.spec = spec
        self.state: dict[str, Any] = {**new_state(now), **(state or {})}

    # -- helpers
    def _to(self, phase: str, now: float, error: str | None = None) -> None:
        if phase != self.state["phase"]:
            self.state["history"] = ([*self.state["history"], {"at": now, "phase": phase, "error": error}])[-20:]
            self.state["phase"] = phase
            self.state["since"] = now
        if error is not None:
            self.state["last_error"] = error

    def _dead(self, now: float, error: str) -> str | None:
        state = self.state
        self._to("dead", now, error)
        if state["restarts"] >= self.spec["give_up_after"]:
            self._to(
                "gave_up",
                now,
                f"{state['restarts']} restarts did not bring the replica back; last error: {error}",
            )
            state["gave_up_group"] = dict(state["group"])
            return "gave_up"
        delay = backoff_delay(state["restarts"], self.spec["backoff"]["initial"], self.spec["backoff"]["max"])
        state["next_restart_at"] = now + delay
        self._to("restarting", now)
        return self._due(now)

    def _due(self, now: float) -> str | None:
        if self.state["next_restart_at"] is not None and now >= self.state["next_restart_at"]:
            return "restart"
        return None

    def restarted(self, now: float, group: Mapping[str, Any]) -> None:
        """The daemon stopped and started every rank: a new generation is starting."""
        state = self.state
        state["generation"] += 1
        state["restarts"] += 1
        state["total_restarts"] += 1
        state["failures"] = 0
        state["tokens"] = None
        state["next_restart_at"] = None
        state["ready_since"] = None
        state["started_at"] = now
        state["group"] = dict(group)
        self._to("starting", now)

    def restart_failed(self, now: float, error: str) -> str | None:
        """Stopping or starting a rank failed: counts as a failed restart."""
        self.state["restarts"] += 1
        self.state["total_restarts"] += 1
        return self._dead(now, error)

    def note_errors(self, errors: Mapping[str, str]) -> None:
        """Each rank's first fatal error (from its log) joins the last error: the cause, not the noise."""
        if not errors:
            return
        self.state["errors"] = dict(errors)
        quoted = "; ".join(f"{host}: {text}" for host, text in sorted(errors.items()))
        base = (self.state["last_error"] or "").split(" | first fatal errors: ")[0]
        self.state["last_error"] = f"{base} | first fatal errors: {quoted}"

    # -- the step
    def observe(self, now: float, obs: Mapping[str, Any]) -> str | None:
        state = self.state
        ranks: Mapping[str, Mapping[str, Any]] = obs.get("ranks", {})
        head = self.spec["ranks"][0]["host"]
        group = {host: r.get("id") for host, r in ranks.items()}
        head_id = group.get(head)
        known_head = state["group"].get(head)

        # someone else (site.yml, an operator, a reboot of the head) started a new head engine: give it
        # the start deadline, and leave gave_up (the operator fixed the cause and redeployed)
        if head_id and known_head and head_id != known_head and state["phase"] != "restarting":
            state.update(restarts=0, failures=0, tokens=None, ready_since=None, started_at=now, group=group)
            self._to("starting", now, None)
        if not state["group"]:
            state["group"] = group

        if state["phase"] == "gave_up":
            return None
        if obs.get("paused"):
            return None  # observe only (a rolling upgrade, a test of detection); the phase stays
        if state["phase"] == "restarting":
            return self._due(now)

        down = sorted(h for h, r in ranks.items() if not r.get("active"))
        moved = sorted(h for h in group if group[h] and state["group"].get(h) and group[h] != state["group"][h])
        if state["phase"] == "starting":
            if down:
                return self._dead(now, self._rank_error("down", down, ranks, obs))
            if obs.get("probe_ok"):
                state.update(failures=0, ready_since=now, group=group, errors={})
                self._to("ready", now)
                return None
            if now - state["started_at"] > self.spec["start_deadline"]:
                return self._dead(
                    now, f"not ready {self.spec['start_deadline']} s after the start; last probe: {obs.get('error')}"
                )
            return None

        # ready or suspect
        if down or moved:
            return self._dead(now, self._rank_error("down" if down else "restarted", down or moved, ranks, obs))
        if obs.get("probe_ok"):
            if state["ready_since"] is not None and now - state["ready_since"] >= self.spec["stable_after"]:
                state["restarts"] = 0  # a streak ends once the replica served for a while
            state.update(failures=0, tokens=obs.get("tokens"))
            if state["phase"] != "ready":
                state["ready_since"] = now
            self._to("ready", now)
            return None
        tokens, before = obs.get("tokens"), state["tokens"]
        state["tokens"] = tokens
        if tokens is not None and before is not None and tokens > before:
            state["failures"] = 0  # busy, not dead: it still generates
            self._to("suspect", now, obs.get("error"))
            return None
        state["failures"] += 1
        self._to("suspect", now, obs.get("error"))
        if state["failures"] >= self.spec["probe"]["failures"]:
            return self._dead(
                now, f"{state['failures']} probes failed in a row, no token generated; last: {obs.get('error')}"
            )
        return None

    def _rank_error(self, what: str, hosts: list[str], ranks: Mapping[str, Mapping[str, Any]], obs: Any) -> str:
        parts = []
        for host in hosts:
            rank = ranks.get(host, {})
            detail = rank.get("state") or "unknown"
            fatal = rank.get("fatal")
            parts.append(f"{host} engine {detail}" + (f" ({fatal})" if fatal else ""))
            if fatal:
                self.state["errors"][host] = fatal
        verb = "not running" if what == "down" else "restarted outside the replica's generation"
        return f"rank {verb}: " + "; ".join(parts)


def in_router(state: Mapping[str, Any]) -> bool:
    """Whether the replica belongs in the router: it serves (ready), or it is busy (suspect while its
    token counter rises, failures reset to 0). Out from the first failed probe of an idle replica, so the
    router stops sending to it within one probe interval (docs/healing.md)."""
    phase = state.get("phase")
    return phase == "ready" or (phase == "suspect" and state.get("failures", 0) == 0)


def status_line(state: Mapping[str, Any] | None, paused: bool = False) -> str:
    """What status.yml shows for a replica: ready / starting / restarting (N, last error ...) / gave up (...)."""
    if not state:
        return "no healer state"
    phase = state.get("phase")
    suffix = " (healer paused)" if paused else ""
    error = state.get("last_error") or "none"
    if phase == "ready":
        return f"ready (generation {state.get('generation', 0)}, {state.get('total_restarts', 0)} restarts)" + suffix
    if phase == "gave_up":
        return f"gave up ({error})" + suffix
    if phase in ("restarting", "dead"):  # the restart about to run: the streak's Nth
        return f"restarting ({state.get('restarts', 0) + 1}, last error {error})" + suffix
    if phase == "starting" and state.get("restarts"):  # the streak's Nth restart is starting
        return f"restarting ({state.get('restarts', 0)}, last error {error})" + suffix
    if phase == "suspect":
        return f"suspect ({state.get('failures', 0)} failed probes, last error {error})" + suffix
    return f"{phase}{suffix}"


# --- what the daemon reads and runs ---------------------------------------------------------------

_FATAL_LINE = re.compile(
    r"killed by signal|code=killed, status=\S+|died unexpectedly|Segmentation fault|core dumped|EngineDeadError|"
    r"Illegal instruction"
)
_NOISE = re.compile(r"nanobind: leaked|leaked \d+ (?:instances|types|functions)|resource_tracker|There appear to be")


def first_fatal_error(log: str, limit: int = 400) -> str | None:
    """The first fatal error in a rank's log: a Python traceback (its last line, the exception), a
    ``Fatal Python error`` (with the first frame the fault handler printed), or a kill by a signal;
    shutdown noise (nanobind leak reports) is skipped. None when nothing fatal is there."""
    lines = [_strip_prefix(line) for line in log.splitlines() if not _NOISE.search(line)]
    for index, body in enumerate(lines):
        if body.startswith("Traceback (most recent call last):"):
            # the exception line ends the traceback: the first line after it that is not indented
            for at, follow in enumerate(lines[index + 1 :], start=index + 1):
                if follow and not follow.startswith((" ", "\t", "Traceback")):
                    # an exception whose message goes on over indented lines (pydantic's ValidationError)
                    more = [m.strip() for m in lines[at + 1 : at + 3] if m.startswith((" ", "\t")) and m.strip()]
                    return " ".join([follow, *more[:1]])[:limit]
            continue
        if body.startswith("Fatal Python error"):
            frame = next((f.strip() for f in lines[index + 1 : index + 8] if f.strip().startswith('File "')), "")
            return (body.strip() + (f" at {frame}" if frame else ""))[:limit]
        if _FATAL_LINE.search(body):
            return body.strip()[:limit]
    return None


_JOURNAL_PREFIX = re.compile(r"^(?:\w{3} \d+ [\d:]+ \S+ \S+?(?:\[\d+\])?: |\S+T[\d:.+-]+ \S+ \S+?(?:\[\d+\])?: )")


# vLLM's logger: "(EngineCore pid=3338) ERROR 12-01 14:35:37 [core.py:1512] " before every line of a traceback
_ENGINE_PREFIX = re.compile(
    r"^(?:\(\w+ pid=\d+\) )?(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \d\d-\d\d [\d:]+ \[[^\]]*\] ?"
)


def _strip_prefix(line: str) -> str:
    """A log line without the journal's 'Mon DD HH:MM:SS host ident[pid]: ' and the engine logger's prefix."""
    return _ENGINE_PREFIX.sub("", _JOURNAL_PREFIX.sub("", line, count=1), count=1)


def token_count(metrics: str, names: tuple[str, ...] | list[str]) -> float | None:
    """The sum of the named counters over all their label sets in Prometheus text; None when absent."""
    total, seen = 0.0, False
    for line in metrics.splitlines():
        if line.startswith("#"):
            continue
        name = re.split(r"[{\s]", line, maxsplit=1)[0]
        if name in names:
            try:
                total += float(line.rsplit(None, 1)[-1])
                seen = True
            except ValueError:
                continue
    return total if seen else None


def probe_verdict(status: int | None, body: str, error: str | None = None) -> tuple[bool, str | None]:
    """A completion probe's answer -> (ok, error). 2xx with a choice is ok; 5xx, EngineDeadError, a
    time-out (status None) are failures with a reason. 4xx other than 429 is ok for liveness? No: the
    probe is ours, so a 4xx means the probe itself is wrong (key, model name) and counts as a failure."""
    if status is None:
        return False, error or "no answer"
    if 200 <= status < 300:
        try:
            answer = json.loads(body)
        except ValueError:
            return False, f"HTTP {status} with a body that is not JSON"
        if answer.get("choices"):
            return True, None
        return False, f"HTTP {status} without choices"
    snippet = " ".join(body.split())[:200]
    if "EngineDeadError" in body or "EngineCore encountered an issue" in body:
        return False, f"HTTP {status} engine dead: {snippet}"
    return False, f"HTTP {status}: {snippet}"


def read_env_file(text: str) -> dict[str, str]:
    """NAME="value" lines (module_utils/_envfile.py writes them) -> {NAME: value}."""
    values = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line.strip())
        if not match:
            continue
        value = match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
            value = re.sub(r"\\(.)", r"\1", value)
        values[match.group(1)] = value
    return values


def sign(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def check_message(key: bytes, body: bytes, signature: str, now: float, last_generation: int, skew: float = 120) -> dict:
    """An authenticated supervisor -> agent message, or ValueError: a wrong signature, a stale
    timestamp (replay) or a generation older than the one the agent runs."""
    if not hmac.compare_digest(sign(key, body), signature or ""):
        raise ValueError("bad signature")
    message = json.loads(body)
    if abs(now - float(message.get("ts", 0))) > skew:
        raise ValueError("stale message")
    if message.get("action") not in ("stop", "start"):
        raise ValueError(f"unknown action {message.get('action')!r}")
    if int(message.get("generation", -1)) < last_generation:
        raise ValueError(f"generation {message.get('generation')} is older than {last_generation}")
    return message


def control_commands(runtime: Mapping[str, Any], action: str) -> list[list[str]]:
    """argv lists that stop (hard: the rank is being replaced) or start this node's engine."""
    if runtime["kind"] == "docker":
        name = runtime["container"]
        if action == "stop":
            return [["docker", "kill", "--signal", "SIGKILL", name], ["docker", "stop", "--time", "10", name]]
        return [["docker", "start", name]]
    unit = runtime["unit"]
    if action == "stop":
        # SIGKILL to every process of the unit first (a hung rank ignores SIGTERM; the replica is being
        # replaced, nothing to drain), then stop: the unit becomes inactive and RemoveIPC cleans up
        return [["systemctl", "kill", "--signal=SIGKILL", unit], ["systemctl", "stop", unit]]
    return [["systemctl", "reset-failed", unit], ["systemctl", "start", unit]]


def state_command(runtime: Mapping[str, Any]) -> list[str]:
    if runtime["kind"] == "docker":
        return ["docker", "inspect", "--format", "{{.State.Status}} {{.State.StartedAt}}", runtime["container"]]
    return ["systemctl", "show", "--property=ActiveState,InvocationID,SubState", runtime["unit"]]


def parse_state(runtime: Mapping[str, Any], rc: int, out: str) -> dict[str, Any]:
    """The engine's state from state_command's answer: {active, id, state}."""
    if runtime["kind"] == "docker":
        if rc != 0:
            return {"active": False, "id": None, "state": "absent"}
        status, _sep, started = out.strip().partition(" ")
        return {"active": status == "running", "id": started or None, "state": status}
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    active = props.get("ActiveState", "unknown")
    return {
        "active": active in ("active", "activating", "reloading"),
        "id": props.get("InvocationID") or None,
        "state": f"{active}/{props.get('SubState', '?')}",
    }


def log_command(runtime: Mapping[str, Any], engine_id: str | None, lines: int = 3000) -> list[str]:
    """This start's log only (engine_id from parse_state): the engine's output and systemd's lines about it
    (the signal that killed it), or the container's output since it started."""
    if runtime["kind"] == "docker":
        since = ["--since", engine_id] if engine_id else []
        return ["docker", "logs", "--tail", str(lines), *since, runtime["container"]]
    match = [f"_SYSTEMD_INVOCATION_ID={engine_id}", "+", f"INVOCATION_ID={engine_id}"] if engine_id else []
    return [
        "journalctl",
        *(match or ["--unit", runtime["unit"]]),
        "--lines",
        str(lines),
        "--no-pager",
        "--output",
        "short",
    ]


def pause_active(text: str | None, now: float) -> bool:
    """The pause file holds the unix time it ends (a failed playbook never leaves the healer paused)."""
    if text is None:
        return False
    try:
        return float(text.strip() or 0) > now
    except ValueError:
        return False
