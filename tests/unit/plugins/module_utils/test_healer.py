"""The healer's decision (module_utils/_healer.py): the state machine, backoff, give-up, the first fatal
error, the probe verdict, the token counter, message authentication, the commands per runtime, and the
healer's part of the plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.inferops.cluster.plugins.module_utils import _healer as h
from ansible_collections.inferops.cluster.plugins.module_utils._plan import PlanError, build_plan

FIXTURES = Path(__file__).parent / "fixtures" / "healer"

SPEC = {
    "ranks": [{"host": "n1"}, {"host": "n2"}],
    "probe": {"failures": 3},
    "start_deadline": 600,
    "backoff": {"initial": 10, "max": 40},
    "give_up_after": 4,
    "stable_after": 120,
}
UP = {"n1": {"active": True, "id": "a1", "state": "active/running"}, "n2": {"active": True, "id": "b1"}}


def obs(ok: bool, ranks: dict | None = None, tokens: float | None = None, error: str | None = "HTTP 500", **kw):
    return {"probe_ok": ok, "error": None if ok else error, "tokens": tokens, "ranks": ranks or UP, **kw}


def ready_supervisor() -> h.Supervisor:
    sup = h.Supervisor(SPEC, None, now=0)
    assert sup.observe(5, obs(True)) is None
    assert sup.state["phase"] == "ready"
    return sup


def test_starting_until_the_first_good_probe_then_ready():
    sup = h.Supervisor(SPEC, None, now=0)
    assert sup.observe(5, obs(False)) is None
    assert sup.state["phase"] == "starting"  # a starting replica is not killed for failing probes
    assert sup.observe(300, obs(False)) is None
    assert sup.observe(310, obs(True)) is None
    assert sup.state["phase"] == "ready"


def test_start_deadline_passed_restarts_at_once():
    sup = h.Supervisor(SPEC, None, now=0)
    assert sup.observe(599, obs(False)) is None
    assert sup.observe(601, obs(False, error="no answer: refused")) == "restart"
    assert sup.state["phase"] == "restarting"
    assert "not ready 600 s after the start" in sup.state["last_error"]
    assert "no answer: refused" in sup.state["last_error"]


def test_a_rank_that_dies_while_starting_is_dead_at_once():
    sup = h.Supervisor(SPEC, None, now=0)
    down = {**UP, "n2": {"active": False, "id": "b1", "state": "failed/failed", "fatal": "Fatal Python error: Aborted"}}
    assert sup.observe(10, obs(False, down)) == "restart"
    assert "n2 engine failed/failed (Fatal Python error: Aborted)" in sup.state["last_error"]


def test_dead_needs_k_failed_probes_in_a_row():
    sup = ready_supervisor()
    assert sup.observe(10, obs(False)) is None
    assert sup.state["phase"] == "suspect"
    assert sup.observe(15, obs(False)) is None
    assert sup.observe(20, obs(False)) == "restart"
    assert "3 probes failed in a row" in sup.state["last_error"]


def test_a_good_probe_in_between_resets_the_count():
    sup = ready_supervisor()
    sup.observe(10, obs(False))
    sup.observe(15, obs(False))
    sup.observe(20, obs(True))
    assert sup.state["phase"] == "ready"
    assert sup.observe(25, obs(False)) is None
    assert sup.observe(30, obs(False)) is None
    assert sup.state["phase"] == "suspect"


def test_a_loaded_replica_whose_tokens_rise_is_not_killed():
    sup = ready_supervisor()
    for step, tokens in enumerate([100, 140, 180, 260, 300, 310]):
        assert sup.observe(10 + 5 * step, obs(False, tokens=tokens, error="timed out")) is None
    assert sup.state["phase"] == "suspect"
    # the counter stops: K more failures make it dead
    assert sup.observe(50, obs(False, tokens=310)) is None
    assert sup.observe(55, obs(False, tokens=310)) is None
    assert sup.observe(60, obs(False, tokens=310)) == "restart"


def test_a_rank_down_while_ready_is_dead_without_waiting_for_probes():
    sup = ready_supervisor()
    down = {**UP, "n2": {"active": False, "id": "b1", "state": "failed/failed"}}
    assert sup.observe(10, obs(True, down)) == "restart"
    assert "rank not running: n2 engine failed/failed" in sup.state["last_error"]


def test_a_follower_restarted_outside_the_generation_is_dead():
    """A rebooted follower's engine starts by itself: it must not join a group that has since restarted."""
    sup = ready_supervisor()
    moved = {**UP, "n2": {"active": True, "id": "b2", "state": "active/running"}}
    assert sup.observe(10, obs(True, moved)) == "restart"
    assert "restarted outside the replica's generation" in sup.state["last_error"]


def test_an_unreachable_agent_is_not_a_dead_rank():
    sup = ready_supervisor()
    unknown = {**UP, "n2": {"active": True, "id": None, "state": "unreachable (timed out)"}}
    assert sup.observe(10, obs(True, unknown)) is None
    assert sup.state["phase"] == "ready"


def test_backoff_grows_to_its_cap_then_gives_up():
    sup = ready_supervisor()
    now = 10
    delays = []
    ids = {"n1": "a1", "n2": "b1"}
    for _attempt in range(SPEC["give_up_after"]):
        now += 5
        down = {"n1": {"active": True, "id": ids["n1"]}, "n2": {"active": False, "id": ids["n2"], "state": "failed"}}
        decision = sup.observe(now, obs(True, down))
        waited = 0
        while decision != "restart":
            waited += 1
            decision = sup.observe(now + waited, obs(False, down))
            assert waited < 100
        delays.append(waited)
        now += waited
        ids = {"n1": f"a{now}", "n2": f"b{now}"}
        sup.restarted(now, ids)
        assert sup.state["phase"] == "starting"
    assert delays[0] <= 1  # the first restart is immediate
    assert delays[1:] == [10, 20, 40]  # initial, doubled, capped at 40
    assert sup.state["generation"] == 4
    # the cause persists: the fifth death gives up, naming the count and the cause
    down = {"n1": {"active": True, "id": f"a{now}"}, "n2": {"active": False, "id": f"b{now}", "state": "failed"}}
    assert sup.observe(now + 5, obs(False, down)) == "gave_up"
    assert sup.state["phase"] == "gave_up"
    line = h.status_line(sup.state)
    assert line.startswith("gave up (4 restarts did not bring the replica back; last error: rank not running: n2")
    # it stays given up: no more restarts, whatever it sees
    assert sup.observe(now + 100, obs(False, down)) is None
    assert sup.state["phase"] == "gave_up"


def test_gave_up_ends_when_someone_starts_a_new_head_engine():
    sup = h.Supervisor({**SPEC, "give_up_after": 1}, None, now=0)
    sup.observe(5, obs(True))
    sup.observe(10, obs(False, {**UP, "n2": {"active": False, "id": "b1"}}))
    sup.restarted(11, {"n1": "a2", "n2": "b2"})
    assert sup.observe(20, obs(False, {"n1": {"active": True, "id": "a2"}, "n2": {"active": False, "id": "b2"}})) == (
        "gave_up"
    )
    # site.yml after the fix: a new head engine (new InvocationID)
    assert sup.observe(30, obs(False, {"n1": {"active": True, "id": "a3"}, "n2": {"active": True, "id": "b3"}})) is None
    assert sup.state["phase"] == "starting"
    assert sup.state["restarts"] == 0
    assert sup.observe(40, obs(True, {"n1": {"active": True, "id": "a3"}, "n2": {"active": True, "id": "b3"}})) is None
    assert sup.state["phase"] == "ready"


def test_paused_observes_but_never_acts():
    sup = ready_supervisor()
    down = {**UP, "n2": {"active": False, "id": "b1"}}
    for step in range(10):
        assert sup.observe(10 + step, obs(False, down, paused=True)) is None
    assert sup.state["phase"] == "ready"
    assert sup.observe(30, obs(False, down)) == "restart"  # resumed: acts on what it sees


def test_the_restart_streak_ends_once_the_replica_served_for_a_while():
    sup = ready_supervisor()
    sup.observe(10, obs(True, {**UP, "n2": {"active": False, "id": "b1"}}))
    sup.restarted(11, {"n1": "a2", "n2": "b2"})
    ranks = {"n1": {"active": True, "id": "a2"}, "n2": {"active": True, "id": "b2"}}
    sup.observe(60, obs(True, ranks))
    assert sup.state["restarts"] == 1
    sup.observe(200, obs(True, ranks))
    assert sup.state["restarts"] == 0
    assert sup.state["total_restarts"] == 1
    assert h.status_line(sup.state) == "ready (generation 1, 1 restarts)"


def test_restart_failed_counts_and_backs_off():
    sup = ready_supervisor()
    assert sup.restart_failed(10, "n2: the agent did not answer") is None
    assert sup.state["phase"] == "restarting"
    assert sup.state["next_restart_at"] == 20
    assert h.status_line(sup.state) == "restarting (2, last error n2: the agent did not answer)"  # the 2nd attempt


def test_state_survives_a_daemon_restart():
    sup = ready_supervisor()
    sup.observe(10, obs(True, {**UP, "n2": {"active": False, "id": "b1"}}))
    sup.restarted(11, {"n1": "a2", "n2": "b2"})
    again = h.Supervisor(SPEC, json.loads(json.dumps(sup.state)), now=50)
    assert again.state["generation"] == 1
    assert again.state["phase"] == "starting"


def test_note_errors_quotes_each_ranks_first_fatal_error():
    sup = ready_supervisor()
    sup.observe(10, obs(True, {**UP, "n2": {"active": False, "id": "b1", "state": "failed"}}))
    sup.note_errors({"n2": "Fatal Python error: Illegal instruction", "n1": "EngineDeadError"})
    assert sup.state["last_error"].endswith(
        "| first fatal errors: n1: EngineDeadError; n2: Fatal Python error: Illegal instruction"
    )
    sup.note_errors({"n2": "other"})  # replaced, not appended twice
    assert sup.state["last_error"].count("first fatal errors") == 1


@pytest.mark.parametrize(
    ("restarts", "expected"), [(0, 0), (1, 10), (2, 20), (3, 40), (4, 80), (5, 160), (6, 300), (20, 300)]
)
def test_backoff_delay(restarts, expected):
    assert h.backoff_delay(restarts, 10, 300) == expected


# --- the first fatal error, on logs of the lab's real engines ---------------------------------------


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        # a real faulthandler report in the journal (a transient unit on a lab node raising SIGILL in a function)
        (
            "faulthandler-sigill.journal",
            'Fatal Python error: Illegal instruction at File "<string>", line 3 in attention_kernel',
        ),
        # the lab follower's journal: a whole start, then `systemctl kill --signal=SIGKILL`
        ("follower-sigkill.journal", "inferops-engine.service: Main process exited, code=killed, status=9/KILL"),
        # the lab follower whose model directory was made unreadable: pydantic's message goes on on the next line
        (
            "follower-model-unreadable.journal",
            "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig Value error, Invalid "
            "repository ID or local directory specified: '/opt/inferops/models/tiny-llama'.",
        ),
        # the lab head's journal once a request reached it after the follower died: vLLM's prefixed tracebacks,
        # EngineDeadError, then 60 lines of nanobind shutdown noise; the cause is the gloo connection to the peer
        (
            "head-after-follower-died.journal",
            "RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed "
            "by peer [172.18.0.3]",
        ),
    ],
)
def test_first_fatal_error_in_real_logs(fixture, expected):
    found = h.first_fatal_error((FIXTURES / fixture).read_text())
    assert found is not None and found.startswith(expected), found


def test_first_fatal_error_ignores_the_noise_after_the_cause():
    text = (FIXTURES / "head-after-follower-died.journal").read_text()
    noise = "\n".join(line for line in text.splitlines() if "nanobind" in line or "leaked" in line)
    assert noise.count("\n") > 20  # the real shutdown noise is there
    assert h.first_fatal_error(noise) is None


def test_first_fatal_error_takes_the_exception_line_of_a_traceback():
    log = "\n".join(
        [
            "INFO starting",
            "Traceback (most recent call last):",
            '  File "/x/y.py", line 3, in <module>',
            "    main()",
            "RuntimeError: NCCL error: unhandled system error",
            "nanobind: leaked 3 instances!",
            "Traceback (most recent call last):",
            "ValueError: later, not the cause",
        ]
    )
    assert h.first_fatal_error(log) == "RuntimeError: NCCL error: unhandled system error"


def test_first_fatal_error_skips_noise_and_returns_none_for_a_clean_log():
    assert h.first_fatal_error("nanobind: leaked 25 instances!\nnanobind: leaked 4 types!\nINFO ok\n") is None


# --- probe, counter, env file ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "ok", "reason"),
    [
        (200, '{"choices": [{"text": "x"}]}', True, None),
        (500, '{"error": "EngineCore encountered an issue. See stack trace"}', False, "HTTP 500 engine dead"),
        (500, "EngineDeadError: engine loop is not running", False, "HTTP 500 engine dead"),
        (401, '{"error": "Unauthorized"}', False, "HTTP 401"),
        (200, "<html>", False, "HTTP 200 with a body that is not JSON"),
        (200, '{"choices": []}', False, "HTTP 200 without choices"),
        (None, "", False, "timed out"),
    ],
)
def test_probe_verdict(status, body, ok, reason):
    got_ok, got_reason = h.probe_verdict(status, body, "timed out" if status is None else None)
    assert got_ok is ok
    assert (got_reason or "").startswith(reason or "")


def test_token_count_sums_label_sets_and_ignores_other_metrics():
    text = (FIXTURES / "vllm-metrics.txt").read_text()
    assert h.token_count(text, h.TOKEN_COUNTERS["vllm"]) == pytest.approx(1.0)  # captured after one 1-token probe
    assert h.token_count(text, h.TOKEN_COUNTERS["sglang"]) is None
    sg = 'sglang:generation_tokens_total{model_name="m"} 5.0\nsglang:generation_tokens_total{model_name="n"} 2\n'
    assert h.token_count(sg, h.TOKEN_COUNTERS["sglang"]) == 7.0


def test_read_env_file():
    assert h.read_env_file('VLLM_API_KEY="s3cr\\"et"\n# c\nHF_TOKEN=abc\n') == {
        "VLLM_API_KEY": 's3cr"et',
        "HF_TOKEN": "abc",
    }


# --- authentication --------------------------------------------------------------------------------


def test_messages_are_authenticated_fresh_and_never_older_than_the_running_generation():
    key = b"k" * 64
    body = json.dumps({"action": "start", "generation": 3, "ts": 1000.0}).encode()
    assert h.check_message(key, body, h.sign(key, body), 1010, 2)["generation"] == 3
    with pytest.raises(ValueError, match="bad signature"):
        h.check_message(b"other", body, h.sign(key, body), 1010, 2)
    with pytest.raises(ValueError, match="bad signature"):
        h.check_message(key, body.replace(b"3", b"4"), h.sign(key, body), 1010, 2)
    with pytest.raises(ValueError, match="stale"):
        h.check_message(key, body, h.sign(key, body), 5000, 2)
    with pytest.raises(ValueError, match="older"):
        h.check_message(key, body, h.sign(key, body), 1010, 4)
    bad = json.dumps({"action": "rm", "generation": 3, "ts": 1000.0}).encode()
    with pytest.raises(ValueError, match="unknown action"):
        h.check_message(key, bad, h.sign(key, bad), 1010, 2)


# --- commands per runtime ----------------------------------------------------------------------------

SYSTEMD = {"kind": "systemd", "unit": "inferops-engine.service", "container": None, "user": "inferops"}
DOCKER = {"kind": "docker", "unit": None, "container": "inferops-engine", "shm_patterns": ["psm_*"]}


def test_control_commands():
    assert h.control_commands(SYSTEMD, "stop") == [
        ["systemctl", "kill", "--signal=SIGKILL", "inferops-engine.service"],
        ["systemctl", "stop", "inferops-engine.service"],
    ]
    assert h.control_commands(SYSTEMD, "start")[-1] == ["systemctl", "start", "inferops-engine.service"]
    assert h.control_commands(DOCKER, "stop")[0] == ["docker", "kill", "--signal", "SIGKILL", "inferops-engine"]
    assert h.control_commands(DOCKER, "start") == [["docker", "start", "inferops-engine"]]


def test_parse_state():
    out = "ActiveState=failed\nSubState=failed\nInvocationID=abc\n"
    assert h.parse_state(SYSTEMD, 0, out) == {"active": False, "id": "abc", "state": "failed/failed"}
    out = "ActiveState=active\nSubState=running\nInvocationID=def\n"
    assert h.parse_state(SYSTEMD, 0, out)["active"] is True
    assert h.parse_state(DOCKER, 0, "running 2026-12-01T14:00:00.1Z\n") == {
        "active": True,
        "id": "2026-12-01T14:00:00.1Z",
        "state": "running",
    }
    assert h.parse_state(DOCKER, 1, "Error: No such object")["state"] == "absent"
    assert h.parse_state(DOCKER, 0, "exited 2026-12-01T14:00:00.1Z")["active"] is False


def test_log_command_reads_only_this_start():
    assert h.log_command(SYSTEMD, "abc")[:4] == ["journalctl", "_SYSTEMD_INVOCATION_ID=abc", "+", "INVOCATION_ID=abc"]
    assert h.log_command(SYSTEMD, None)[:3] == ["journalctl", "--unit", "inferops-engine.service"]
    assert h.log_command(DOCKER, "2026-12-01T14:00:00Z") == [
        "docker",
        "logs",
        "--tail",
        "3000",
        "--since",
        "2026-12-01T14:00:00Z",
        "inferops-engine",
    ]


def test_pause_file_expires():
    assert h.pause_active("2000\n", 1000) is True
    assert h.pause_active("2000\n", 3000) is False
    assert h.pause_active(None, 1000) is False
    assert h.pause_active("garbage", 1000) is False


def test_status_lines():
    assert h.status_line(None) == "no healer state"
    assert h.status_line({"phase": "starting"}) == "starting"
    assert h.status_line({"phase": "starting", "restarts": 2, "last_error": "x"}) == "restarting (2, last error x)"
    assert h.status_line({"phase": "ready", "generation": 3, "total_restarts": 3}, paused=True) == (
        "ready (generation 3, 3 restarts) (healer paused)"
    )


# --- the plan -----------------------------------------------------------------------------------------


def two_nodes(**extra):
    base = {
        "inferops_tp": 2,
        "inferops_gpus_per_node": 1,
        "inferops_model_path": "/m",
        "inferops_device": "cpu",
        "inferops_runtime": "systemd",
        "inferops_api_key": "s3cr3t-key-value",
        **extra,
    }
    return {"n1": {"ansible_host": "10.0.0.1", **base}, "n2": {"ansible_host": "10.0.0.2", **base}}


def test_plan_gives_the_head_a_supervisor_and_the_follower_an_agent():
    plan = build_plan(two_nodes())
    head, follower = plan["hosts"]["n1"], plan["hosts"]["n2"]
    assert head["healer"]["role"] == "supervisor"
    assert follower["healer"]["role"] == "agent"
    assert head["listens"]["healer"] == 8390 and follower["listens"]["healer"] == 8390
    assert head["healer"]["ranks"] == [
        {"host": "n1", "address": "10.0.0.1", "node_rank": 0, "url": "http://10.0.0.1:8390"},
        {"host": "n2", "address": "10.0.0.2", "node_rank": 1, "url": "http://10.0.0.2:8390"},
    ]
    assert head["healer"]["probe"]["url"] == head["api_url"]
    assert head["healer"]["probe"]["key_names"] == ["VLLM_API_KEY"]
    assert head["healer"]["probe"]["token_counters"][0] == "vllm:generation_tokens_total"
    assert head["healer"]["runtime"]["unit"] == "inferops-engine.service"
    assert head["env"]["PYTHONFAULTHANDLER"] == "1"
    assert plan["replicas"]["r0"]["healer"] == {
        "enabled": True,
        "supervisor": "n1",
        "port": 8390,
        "url": "http://10.0.0.1:8390",
        "unit": "inferops-healer.service",
        "agents": ["n2"],
    }
    assert "s3cr3t-key-value" not in json.dumps(plan)  # the key is read on the node, never in the plan


def test_plan_healer_settings_and_switch():
    plan = build_plan(two_nodes(inferops_healer_probe_failures=5, inferops_healer_port=8400))
    assert plan["hosts"]["n1"]["healer"]["probe"]["failures"] == 5
    assert plan["hosts"]["n2"]["listens"]["healer"] == 8400
    off = build_plan(two_nodes(inferops_healer=False))
    assert off["hosts"]["n1"]["healer"] is None and off["hosts"]["n2"]["healer"] is None
    assert "healer" not in off["hosts"]["n1"]["listens"]
    assert off["replicas"]["r0"]["healer"] == {"enabled": False}


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"inferops_healer": "maybe"}, "inferops_healer"),
        ({"inferops_healer_probe_failures": 0}, "inferops_healer_probe_failures"),
        ({"inferops_healer_probe_interval": "soon"}, "inferops_healer_probe_interval"),
        ({"inferops_healer_backoff_initial": 100, "inferops_healer_backoff_max": 10}, "inferops_healer_backoff_max"),
        ({"inferops_healer_port": 22}, "inferops_healer_port"),
    ],
)
def test_plan_rejects_bad_healer_settings_naming_host_and_variable(extra, variable):
    with pytest.raises(PlanError) as err:
        build_plan(two_nodes(**extra))
    assert err.value.variable == variable
    assert err.value.host == "n1"


def test_in_router_only_while_serving_or_busy():
    assert h.in_router({"phase": "ready"}) is True
    assert h.in_router({"phase": "suspect", "failures": 0}) is True  # slow probes, tokens rising: busy
    assert h.in_router({"phase": "suspect", "failures": 1}) is False  # out from the first failed probe
    for phase in ("starting", "dead", "restarting", "gave_up"):
        assert h.in_router({"phase": phase}) is False


def test_plan_names_the_router_the_supervisor_updates():
    plan = build_plan(two_nodes(inferops_router_host="n2"))
    assert plan["hosts"]["n1"]["healer"]["router"] == {
        "host": "n2",
        "url": "http://10.0.0.2:30000",
        "worker": "http://10.0.0.1:8000",
    }
    assert plan["hosts"]["n2"]["healer"]["router"] is None  # agents never talk to the router


def test_the_plan_step_collects_every_healer_variable():
    """The cluster_plan action templates only PLAN_VARIABLES: a healer setting missing there is silently ignored
    (found on the lab: the inventory's inferops_healer_give_up_after never reached the node)."""
    from ansible_collections.inferops.cluster.plugins.module_utils._plan import PLAN_VARIABLES

    assert set(h.VARIABLES) | {"inferops_healer_port"} <= set(PLAN_VARIABLES)
