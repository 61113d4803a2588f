"""The readiness waiter: phases in order, each under its own timeout, a rank that dies fails at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.inferops.cluster.plugins.module_utils._readiness import (
    AliveWatch,
    NoopWaiter,
    Probe,
    Waiter,
    clock,
    completion_probe,
    docker_rank_state,
    failure_message,
    find_ready_line,
    get_waiter,
    health_probe,
    models_listed,
    models_probe,
    parse_systemctl_show,
    ready_line_probe,
    select_phases,
    systemd_rank_state,
    time_to_ready,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "readiness"


class FakeTime:
    """Injected clock: sleeping advances time, nothing really waits."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    def factory(self, timeout: float, interval: float):
        return clock(timeout, interval, now=self.now, sleep=self.sleep)


def sequence(*probes: Probe):
    """A probe answering the given results in turn, then repeating the last."""
    answers = list(probes)
    calls = {"n": 0}

    def probe() -> Probe:
        calls["n"] += 1
        return answers.pop(0) if len(answers) > 1 else answers[0]

    probe.calls = calls  # type: ignore[attr-defined]
    return probe


UP = Probe(True, "running")


# --- clock --------------------------------------------------------------------------------------
def test_clock_yields_until_the_timeout_and_never_oversleeps():
    ft = FakeTime()
    ticks = list(clock(10, 4, now=ft.now, sleep=ft.sleep))
    assert ticks == [0.0, 4.0, 8.0, 10.0]
    assert ft.sleeps == [4, 4, 2]


# --- parsers on captured output -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("fixture", "running", "status", "instance"),
    [
        ("systemctl_show_failed.txt", False, "failed/failed", "1dc8a6a3119d44d4bcd53630fe8af94f"),
        ("systemctl_show_missing.txt", False, "inactive/dead", ""),
    ],
)
def test_systemd_rank_state_from_captured_output(fixture, running, status, instance):
    state = systemd_rank_state(parse_systemctl_show((FIXTURES / fixture).read_text()))
    assert state["running"] is running
    assert state["status"] == status
    assert state["instance"] == instance


def test_systemd_rank_state_running():
    text = "ActiveState=active\nSubState=running\nInvocationID=abc\nNRestarts=2\n"
    state = systemd_rank_state(parse_systemctl_show(text))
    assert state == {
        "running": True,
        "status": "active/running",
        "instance": "abc",
        "restarts": 2,
        "started": "",
        "result": "",
    }


def test_docker_rank_state_from_captured_inspect():
    state = docker_rank_state((FIXTURES / "docker_inspect_running.json").read_text())
    assert state["running"] is True
    assert state["status"] == "running"
    assert state["instance"] == "2026-11-21T15:03:40.896838711Z"


def test_docker_rank_state_of_an_exited_and_an_absent_container():
    exited = '[{"State": {"Status": "exited", "Running": false, "ExitCode": 137, "StartedAt": "x"}, "RestartCount": 1}]'
    assert docker_rank_state(exited)["status"] == "exited (exit code 137)"
    assert docker_rank_state(exited)["running"] is False
    assert docker_rank_state("[]")["status"] == "absent"


def test_models_listed_from_captured_vllm_answer():
    assert models_listed((FIXTURES / "vllm_models.json").read_text()) == ["tiny-llama"]


@pytest.mark.parametrize(
    ("engine", "line", "found"),
    [
        ("vllm", "INFO:     Application startup complete.", True),
        ("sglang", "[2025-02-11 10:00:00] The server is fired up and ready to roll!", True),
        ("sglang", "INFO:     Application startup complete.", False),
        ("vllm", "INFO:     Waiting for application startup.", False),
    ],
)
def test_find_ready_line(engine, line, found):
    log = f"starting\n{line}\nmore\n"
    assert (find_ready_line(engine, log) is not None) is found


# --- probes over an injected fetch ---------------------------------------------------------------
def fetch_answering(answers):
    calls = []

    def fetch(method, path, body):
        calls.append((method, path, body))
        answer = answers[(method, path)]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return fetch, calls


def test_http_probes_on_captured_answers():
    fetch, calls = fetch_answering(
        {
            ("GET", "/health"): (200, ""),
            ("GET", "/v1/models"): (200, (FIXTURES / "vllm_models.json").read_text()),
            ("POST", "/v1/completions"): (200, (FIXTURES / "vllm_completion.json").read_text()),
        }
    )
    assert health_probe(fetch)().ok
    assert models_probe(fetch, "tiny-llama")().ok
    done = completion_probe(fetch, "tiny-llama")()
    assert done.ok
    assert "'ost'" in done.detail
    assert calls[-1][2] == {"model": "tiny-llama", "prompt": "Hello", "max_tokens": 1, "temperature": 0}


def test_models_probe_rejects_another_model_and_errors():
    fetch, _calls = fetch_answering({("GET", "/v1/models"): (200, (FIXTURES / "vllm_models.json").read_text())})
    result = models_probe(fetch, "deepseek-r1")()
    assert not result.ok
    assert "deepseek-r1" in result.detail
    broken, _calls = fetch_answering({("GET", "/v1/models"): OSError("Connection refused")})
    assert "Connection refused" in models_probe(broken, "x")().detail


def test_completion_probe_fails_on_engine_dead_error():
    # /health can answer 200 while the engine cannot generate: the completion must fail the phase
    fetch, _calls = fetch_answering({("POST", "/v1/completions"): (500, '{"error": "EngineDeadError"}')})
    result = completion_probe(fetch, "tiny-llama")()
    assert not result.ok
    assert "HTTP 500" in result.detail


# --- the waiter ----------------------------------------------------------------------------------
def test_all_phases_pass_in_order():
    ft = FakeTime()
    order = []

    def probe(name, results):
        seq = sequence(*results)

        def run():
            order.append(name)
            return seq()

        return run

    phases = [
        ("alive", 10, probe("alive", [UP])),
        (
            "ready_line",
            100,
            probe("ready_line", [Probe(False, "no")] * 3 + [Probe(True, "Application startup complete")]),
        ),
        ("health", 10, probe("health", [Probe(True, "HTTP 200")])),
    ]
    result = Waiter(phases, lambda: UP, clock_factory=ft.factory, interval=5).wait()
    assert result.ok
    assert [p.name for p in result.phases] == ["alive", "ready_line", "health"]
    assert result.phases[1].attempts == 4
    assert result.phases[1].seconds == 15.0
    assert order == ["alive"] + ["ready_line"] * 4 + ["health"]


def test_a_phase_times_out_with_its_own_timeout():
    ft = FakeTime()
    phases = [
        ("alive", 10, lambda: UP),
        ("health", 12, lambda: Probe(False, "GET /health: HTTP 503")),
        ("models", 999, lambda: Probe(True)),
    ]
    result = Waiter(phases, lambda: UP, clock_factory=ft.factory, interval=5).wait()
    assert not result.ok
    assert result.failed_phase == "health"
    assert result.reason == "timed out after 12s: GET /health: HTTP 503"
    assert [p.name for p in result.phases] == ["alive", "health"]
    assert failure_message("node-2", result) == (
        "node-2: inference not ready: phase 'health' failed: timed out after 12s: GET /health: HTTP 503"
    )


def test_a_rank_that_dies_fails_the_current_phase_at_once():
    ft = FakeTime()
    states = iter(
        [
            {"running": True, "status": "active/running", "instance": "a"},
            {"running": True, "status": "active/running", "instance": "a"},
            {"running": False, "status": "failed/failed", "instance": "a", "result": "signal"},
        ]
    )
    watch = AliveWatch(lambda: next(states))
    phases = [("alive", 60, watch), ("ready_line", 900, lambda: Probe(False, "not yet"))]
    result = Waiter(phases, watch, clock_factory=ft.factory, interval=3).wait()
    assert not result.ok
    assert result.failed_phase == "ready_line"
    assert result.reason == "rank stopped: failed/failed signal"
    assert ft.t - 1000.0 == 3.0  # one poll, not the 900 s timeout


def test_a_rank_restart_during_the_wait_is_fatal():
    states = iter([{"running": True, "instance": "a"}, {"running": True, "instance": "b"}])
    watch = AliveWatch(lambda: next(states))
    assert watch().ok
    again = watch()
    assert not again.ok
    assert again.fatal
    assert "restarted" in again.detail


def test_alive_waits_for_a_starting_rank_but_not_for_a_failed_one():
    starting = AliveWatch(lambda: {"running": False, "status": "activating/start"})()
    assert not starting.ok
    assert not starting.fatal
    failed = AliveWatch(lambda: {"running": False, "status": "failed/failed"})()
    assert failed.fatal


def test_ready_line_probe_reads_the_log():
    log = {"text": "loading\n"}
    probe = ready_line_probe("vllm", lambda: log["text"])
    assert not probe().ok
    log["text"] += "INFO:     Application startup complete.\n"
    assert probe().detail == "INFO:     Application startup complete."


def test_check_mode_uses_the_noop_waiter_and_probes_nothing():
    def boom() -> Probe:
        raise AssertionError("probed in check mode")

    waiter = get_waiter([("alive", 1, boom), ("completion", 1, boom)], boom, check_mode=True)
    assert isinstance(waiter, NoopWaiter)
    result = waiter.wait()
    assert result.ok
    assert [p.detail for p in result.phases] == ["skipped in check mode"] * 2


@pytest.mark.parametrize(
    ("requested", "is_head", "expected"),
    [
        (["completion", "alive", "ready_line"], True, ["alive", "ready_line", "completion"]),
        (["alive", "ready_line", "health"], False, ["alive", "health"]),
    ],
)
def test_select_phases(requested, is_head, expected):
    assert select_phases(requested, is_head) == expected


def test_select_phases_rejects_unknown_names():
    with pytest.raises(ValueError, match="warmup"):
        select_phases(["warmup"], True)


@pytest.mark.parametrize(
    ("started", "line", "seconds"),
    [
        (
            "@1795272144",
            "1795272222.459020 inferops-lab-1 inferops-engine[2965]: INFO:     Application startup complete.",
            78.5,
        ),
        (
            "2026-11-21T15:03:40.896838711Z",
            "2026-11-21T15:04:50.996838711Z INFO:     Application startup complete.",
            70.1,
        ),
        ("Sat 2026-11-21 14:54:46 UTC", "1795272222.4 x: Application startup complete", None),
        ("@1795272144", None, None),
    ],
)
def test_time_to_ready(started, line, seconds):
    assert time_to_ready(started, line) == seconds
