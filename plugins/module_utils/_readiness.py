# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Readiness of an inference replica: phases, predicates and the waiter.

Modelled on kubernetes.core's ``module_utils/k8s/waiter.py``: predicates are plain functions,
the clock is passed in (a generator of elapsed seconds), a waiter object runs the phases and a
no-op waiter stands in for it in check mode.  No AnsibleModule import: the module injects the
probes (commands, HTTP) and the tests inject fakes.

Phases, each with its own timeout, in order:

``alive``       this rank's process (systemd unit) or container is running; checked again
                on every poll of the later phases: a rank that dies or restarts fails the wait
                at once, naming the phase it was in.
``ready_line``  the engine's ready line is in the head's log of the current run.
``health``      ``GET /health`` answers 200.
``models``      ``GET /v1/models`` lists the served model name.
``completion``  one real completion of 1 token succeeds (vLLM's /health was seen answering 200
                while its engine could not generate).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PHASES: tuple[str, ...] = ("alive", "ready_line", "health", "models", "completion")
HEAD_ONLY_PHASES: frozenset[str] = frozenset({"ready_line"})

READY_LINES: dict[str, str] = {
    "vllm": "Application startup complete",
    "sglang": "The server is fired up and ready to roll!",
}


# ---------------------------------------------------------------------------
# results and errors
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Probe:
    """What one look at a phase found."""

    ok: bool
    detail: str = ""
    fatal: bool = False  # no point in waiting longer (the rank is gone)


@dataclass
class PhaseReport:
    name: str
    ok: bool
    seconds: float
    attempts: int
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "seconds": round(self.seconds, 1),
            "attempts": self.attempts,
            "detail": self.detail,
        }


@dataclass
class WaitResult:
    ok: bool
    phases: list[PhaseReport] = field(default_factory=list)
    failed_phase: str | None = None
    reason: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "phases": [p.as_dict() for p in self.phases],
            "failed_phase": self.failed_phase,
            "reason": self.reason,
            "seconds": round(self.seconds, 1),
        }


# ---------------------------------------------------------------------------
# clock (injected; tests pass a fake now/sleep)
# ---------------------------------------------------------------------------
def clock(
    timeout: float,
    interval: float,
    now: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[float]:
    """Yield the seconds elapsed: once at once, then after every ``interval`` until ``timeout``."""
    start = now()
    yield 0.0
    while True:
        elapsed = now() - start
        if elapsed >= timeout:
            return
        sleep(min(interval, max(timeout - elapsed, 0.0)))
        yield now() - start


# ---------------------------------------------------------------------------
# parsers of real command output (pure)
# ---------------------------------------------------------------------------
def parse_systemctl_show(text: str) -> dict[str, str]:
    """``systemctl show UNIT -p A,B`` prints ``A=value`` lines."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    return props


def systemd_rank_state(props: dict[str, str]) -> dict[str, Any]:
    """Normalise a unit's properties into {running, status, instance, restarts}."""
    active = props.get("ActiveState", "")
    sub = props.get("SubState", "")
    return {
        "running": active == "active" and sub == "running",
        "status": f"{active}/{sub}" if sub else active or "unknown",
        "instance": props.get("InvocationID", ""),
        "restarts": int(props.get("NRestarts", "0") or 0),
        "started": props.get("ExecMainStartTimestamp", ""),
        "result": props.get("Result", ""),
    }


def docker_rank_state(inspect_json: str) -> dict[str, Any]:
    """Normalise ``docker inspect CONTAINER`` (a JSON list) into the same shape."""
    data = json.loads(inspect_json or "[]")
    if not data:
        return {"running": False, "status": "absent", "instance": "", "restarts": 0, "started": "", "result": ""}
    item = data[0] if isinstance(data, list) else data
    state = item.get("State", {})
    status = state.get("Status", "unknown")
    if state.get("ExitCode"):
        status = f"{status} (exit code {state['ExitCode']})"
    return {
        "running": bool(state.get("Running")) and not state.get("Restarting"),
        "status": status,
        "instance": state.get("StartedAt", ""),
        "restarts": int(item.get("RestartCount", 0) or 0),
        "started": state.get("StartedAt", ""),
        "result": state.get("Error", ""),
    }


SLURM_PENDING = ("PENDING", "CONFIGURING", "REQUEUED", "RESIZING", "SUSPENDED")


def slurm_rank_state(job_id: str, squeue: str) -> dict[str, Any]:
    """``squeue -h -j ID -o '%T|%S'`` (state|start time) into the same shape; no line: the job has ended."""
    line = next((ln.strip() for ln in squeue.splitlines() if ln.strip()), "")
    state, _sep, started = line.partition("|")
    state = state.upper()
    if not state:
        status = "absent (the job left the queue: ended, cancelled or failed)"
    elif state == "RUNNING" or state in SLURM_PENDING:
        status = state.lower()
    else:  # COMPLETING, COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL ...: over
        status = f"exited ({state.lower()})"
    return {
        "running": state == "RUNNING",
        "status": status,
        "instance": str(job_id) if state == "RUNNING" else "",
        "restarts": 0,
        "started": started if state == "RUNNING" else "",
        "result": "",
    }


def read_text(path: str) -> str:
    """A log file's text ('' while it does not exist yet)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def find_ready_line(engine: str, log_text: str) -> str | None:
    """The first log line holding the engine's ready line, or None."""
    needle = READY_LINES[engine]
    for line in log_text.splitlines():
        if needle in line:
            return line.strip()
    return None


def models_listed(body: str) -> list[str]:
    """Model ids of an OpenAI ``/v1/models`` answer."""
    data = json.loads(body)
    return [str(item.get("id")) for item in data.get("data", []) if isinstance(item, dict)]


def completion_text(body: str) -> str:
    """The text of the first choice of an OpenAI completion answer (raises on a malformed answer)."""
    data = json.loads(body)
    choices = data.get("choices") or []
    if not choices:
        raise ValueError(f"no choices in answer: {body[:200]}")
    return str(choices[0].get("text", ""))


def epoch_of(stamp: str) -> float | None:
    """Seconds since the epoch of ``@1795272144`` (systemctl --timestamp=unix), a journal
    ``short-unix`` line prefix (``1795272144.459020 host ...``) or an RFC 3339 docker timestamp
    (``2026-11-21T15:03:40.896838711Z ...``); None when there is none."""
    word = stamp.strip().split(" ", 1)[0] if stamp.strip() else ""
    if not word:
        return None
    if word.startswith("@"):
        word = word[1:]
    try:
        return float(word)
    except ValueError:
        pass
    match = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})$", word)
    if not match:
        return None
    base, frac, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    parsed = datetime.fromisoformat(base + zone)
    return parsed.timestamp() + (float("0" + frac) if frac else 0.0)


def time_to_ready(started: str, ready_line: str | None) -> float | None:
    """Seconds from the rank's start to its ready line (both carrying timestamps), or None."""
    if not ready_line:
        return None
    start, ready = epoch_of(started), epoch_of(ready_line)
    if start is None or ready is None:
        return None
    return round(ready - start, 1)


def tail(text: str, lines: int) -> list[str]:
    return text.splitlines()[-lines:] if lines > 0 else []


# ---------------------------------------------------------------------------
# predicates: each builds a probe function out of injected primitives
# ---------------------------------------------------------------------------
# rank_state() -> dict as returned by systemd_rank_state / docker_rank_state
RankState = Callable[[], dict[str, Any]]
# fetch(method, path, body|None) -> (status, text); raises OSError / ValueError on transport errors
Fetch = Callable[[str, str, "dict[str, Any] | None"], "tuple[int, str]"]


class AliveWatch:
    """Rank liveness: running, and still the same run (no restart) as when the wait began."""

    def __init__(self, rank_state: RankState) -> None:
        self._rank_state = rank_state
        self._instance: str | None = None
        self.last: dict[str, Any] = {}

    def __call__(self) -> Probe:
        state = self._rank_state()
        self.last = state
        if not state.get("running"):
            if self._instance is not None:
                return Probe(False, f"rank stopped: {state.get('status')} {state.get('result', '')}".strip(), True)
            # Not yet running: a terminal state is fatal, a starting one is worth waiting for.
            status = str(state.get("status", ""))
            fatal = status.startswith(("failed", "inactive", "exited", "dead", "absent"))
            return Probe(False, f"rank not running: {status}", fatal)
        instance = str(state.get("instance", ""))
        if self._instance is None:
            self._instance = instance
        elif instance != self._instance:
            return Probe(False, f"rank restarted during the wait ({self._instance} -> {instance})", True)
        return Probe(True, f"running ({state.get('status')})")


def ready_line_probe(engine: str, read_log: Callable[[], str]) -> Callable[[], Probe]:
    def probe() -> Probe:
        line = find_ready_line(engine, read_log())
        if line is None:
            return Probe(False, f"no {READY_LINES[engine]!r} in the log yet")
        return Probe(True, line)

    return probe


def health_probe(fetch: Fetch, path: str = "/health") -> Callable[[], Probe]:
    def probe() -> Probe:
        try:
            status, _text = fetch("GET", path, None)
        except (OSError, ValueError) as exc:
            return Probe(False, f"GET {path}: {exc}")
        return Probe(status == 200, f"GET {path}: HTTP {status}")

    return probe


def models_probe(fetch: Fetch, served_model_name: str) -> Callable[[], Probe]:
    def probe() -> Probe:
        try:
            status, text = fetch("GET", "/v1/models", None)
        except (OSError, ValueError) as exc:
            return Probe(False, f"GET /v1/models: {exc}")
        if status != 200:
            return Probe(False, f"GET /v1/models: HTTP {status}")
        try:
            ids = models_listed(text)
        except ValueError as exc:
            return Probe(False, f"GET /v1/models: not JSON ({exc})")
        if served_model_name not in ids:
            return Probe(False, f"/v1/models lists {ids}, not {served_model_name!r}")
        return Probe(True, f"/v1/models lists {served_model_name!r}")

    return probe


def completion_probe(fetch: Fetch, served_model_name: str, prompt: str = "Hello") -> Callable[[], Probe]:
    body = {"model": served_model_name, "prompt": prompt, "max_tokens": 1, "temperature": 0}

    def probe() -> Probe:
        try:
            status, text = fetch("POST", "/v1/completions", body)
        except (OSError, ValueError) as exc:
            return Probe(False, f"POST /v1/completions: {exc}")
        if status != 200:
            return Probe(False, f"POST /v1/completions: HTTP {status} {text[:200]}")
        try:
            generated = completion_text(text)
        except ValueError as exc:
            return Probe(False, f"POST /v1/completions: {exc}")
        return Probe(True, f"1-token completion: {generated!r}")

    return probe


# ---------------------------------------------------------------------------
# waiters
# ---------------------------------------------------------------------------
ClockFactory = Callable[[float, float], Iterator[float]]


class Waiter:
    """Run the phases in order, each under its own timeout, watching the rank throughout."""

    def __init__(
        self,
        phases: list[tuple[str, float, Callable[[], Probe]]],
        alive: Callable[[], Probe],
        clock_factory: ClockFactory = clock,
        interval: float = 2.0,
    ) -> None:
        self.phases = phases
        self.alive = alive
        self.clock_factory = clock_factory
        self.interval = interval

    def wait(self) -> WaitResult:
        result = WaitResult(ok=True)
        for name, timeout, probe in self.phases:
            report = PhaseReport(name=name, ok=False, seconds=0.0, attempts=0)
            result.phases.append(report)
            last = Probe(False, "not checked")
            elapsed = 0.0
            for elapsed in self.clock_factory(timeout, self.interval):
                report.attempts += 1
                report.seconds = elapsed
                if name != "alive":
                    alive = self.alive()
                    if not alive.ok:
                        # the rank is gone (or restarted): waiting longer cannot help
                        last = Probe(False, alive.detail, True)
                        break
                last = probe()
                if last.ok or last.fatal:
                    break
            report.detail = last.detail
            result.seconds += elapsed
            if last.ok:
                report.ok = True
                continue
            result.ok = False
            result.failed_phase = name
            if last.fatal:
                result.reason = last.detail
            else:
                result.reason = f"timed out after {timeout:g}s: {last.detail}"
            return result
        return result


class NoopWaiter:
    """Check mode: report the phases that would run, touch nothing."""

    def __init__(self, phases: list[tuple[str, float, Callable[[], Probe]]], *_args: Any, **_kwargs: Any) -> None:
        self.phases = phases

    def wait(self) -> WaitResult:
        return WaitResult(
            ok=True,
            phases=[PhaseReport(name, True, 0.0, 0, "skipped in check mode") for name, _t, _p in self.phases],
        )


def select_phases(requested: list[str], is_head: bool) -> list[str]:
    """Phases in canonical order; the head-only ones (the log line) are dropped on followers."""
    unknown = sorted(set(requested) - set(PHASES))
    if unknown:
        raise ValueError(f"unknown phases {unknown}; known: {list(PHASES)}")
    return [p for p in PHASES if p in requested and (is_head or p not in HEAD_ONLY_PHASES)]


def get_waiter(
    phases: list[tuple[str, float, Callable[[], Probe]]],
    alive: Callable[[], Probe],
    check_mode: bool = False,
    clock_factory: ClockFactory = clock,
    interval: float = 2.0,
) -> Waiter | NoopWaiter:
    if check_mode:
        return NoopWaiter(phases)
    return Waiter(phases, alive, clock_factory=clock_factory, interval=interval)


def failure_message(host: str, result: WaitResult) -> str:
    return f"{host}: inference not ready: phase '{result.failed_phase}' failed: {result.reason}"
