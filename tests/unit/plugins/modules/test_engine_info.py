"""engine_info's readiness probe: the readiness wait's probes, once each, in order, stopping at the first failure."""

from __future__ import annotations

import json

import pytest

from ansible_collections.inferops.cluster.plugins.modules.engine_info import probe_api


def fake_fetch(answers):
    calls = []

    def fetch(method, path, body):
        calls.append((method, path))
        answer = answers[(method, path)]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return fetch, calls


MODELS = json.dumps({"data": [{"id": "tiny-llama"}]})
DONE = json.dumps({"choices": [{"text": " world"}]})


def test_ready_when_every_probe_passes():
    fetch, calls = fake_fetch(
        {("GET", "/health"): (200, ""), ("GET", "/v1/models"): (200, MODELS), ("POST", "/v1/completions"): (200, DONE)}
    )
    ready, probes = probe_api(fetch, "tiny-llama")
    assert ready is True
    assert [p["phase"] for p in probes] == ["health", "models", "completion"]
    assert calls == [("GET", "/health"), ("GET", "/v1/models"), ("POST", "/v1/completions")]


@pytest.mark.parametrize(
    ("answers", "phase", "detail"),
    [
        # vLLM answered /health 200 while it could not generate: the completion decides
        (
            {
                ("GET", "/health"): (200, ""),
                ("GET", "/v1/models"): (200, MODELS),
                ("POST", "/v1/completions"): (500, "EngineDeadError"),
            },
            "completion",
            "HTTP 500",
        ),
        ({("GET", "/health"): ConnectionRefusedError(111, "Connection refused")}, "health", "Connection refused"),
        (
            {("GET", "/health"): (200, ""), ("GET", "/v1/models"): (200, json.dumps({"data": [{"id": "other"}]}))},
            "models",
            "not 'tiny-llama'",
        ),
        ({("GET", "/health"): (200, ""), ("GET", "/v1/models"): (401, "unauthorized")}, "models", "HTTP 401"),
    ],
)
def test_not_ready_names_the_failing_probe(answers, phase, detail):
    fetch, _calls = fake_fetch(answers)
    ready, probes = probe_api(fetch, "tiny-llama")
    assert ready is False
    assert probes[-1]["phase"] == phase and probes[-1]["ok"] is False
    assert detail in probes[-1]["detail"]
