"""The monitoring part of the plan: ports in listens, the monitoring host, scrape targets by job, the switch."""

from __future__ import annotations

import pytest

from ansible_collections.inferops.cluster.plugins.module_utils._plan import PlanError, build_plan

COMMON = {"inferops_model_path": "/m", "inferops_gpus_per_node": 8, "inferops_api_open": True}


def _hosts(**extra):
    return {
        "a1": {**COMMON, "ansible_host": "10.0.0.1", "inferops_replica": "a", **extra},
        "a2": {**COMMON, "ansible_host": "10.0.0.2", "inferops_replica": "a", **extra},
        "b1": {**COMMON, "ansible_host": "10.0.0.3", "inferops_replica": "b", "inferops_engine": "sglang", **extra},
    }


def test_default_host_is_first_head_and_targets_cover_every_job():
    plan = build_plan(_hosts())
    mon = plan["monitoring"]
    assert (mon["host"], mon["address"]) == ("a1", "10.0.0.1")
    assert mon["prometheus_url"] == "http://10.0.0.1:9090"
    assert mon["alertmanager_url"] == "http://10.0.0.1:9093"
    assert [t["target"] for t in mon["targets"]["node"]] == ["10.0.0.1:9100", "10.0.0.2:9100", "10.0.0.3:9100"]
    assert [t["target"] for t in mon["targets"]["dcgm"]] == ["10.0.0.1:9400", "10.0.0.2:9400", "10.0.0.3:9400"]
    vllm = {"target": "10.0.0.1:8000", "scheme": "http", "host": "a1", "replica": "a", "node_rank": 0}
    assert mon["targets"]["vllm"] == [vllm]
    sglang = {"target": "10.0.0.3:8000", "scheme": "http", "host": "b1", "replica": "b", "node_rank": 0}
    assert mon["targets"]["sglang"] == [sglang]
    assert {t["via"] for t in mon["targets"]["rdma"]} == {"textfile"}
    assert mon["targets"]["router"] == []
    assert plan["hosts"]["a1"]["listens"] == {
        "api": 8000,
        "master": 29500,
        "node_exporter": 9100,
        "dcgm_exporter": 9400,
        "prometheus": 9090,
        "alertmanager": 9093,
        "healer": 8390,
    }
    assert plan["hosts"]["a2"]["listens"] == {"node_exporter": 9100, "dcgm_exporter": 9400, "healer": 8390}
    assert plan["hosts"]["a2"]["monitoring"]["listens"] == {"node_exporter": 9100, "dcgm_exporter": 9400}
    assert (
        plan["hosts"]["a2"]["monitoring"]["dcgm"] is True and plan["hosts"]["a2"]["monitoring"]["gpu_textfile"] is False
    )


def test_router_host_is_the_default_and_its_metrics_are_scraped():
    plan = build_plan(_hosts(inferops_router_host="b1", inferops_router_metrics_port=29100))
    assert plan["monitoring"]["host"] == "b1"
    assert plan["monitoring"]["targets"]["router"] == [{"target": "10.0.0.3:29100", "host": "b1"}]
    assert plan["routers"] == {"b1": {"address": "10.0.0.3", "port": 30000, "metrics_port": 29100}}
    assert plan["hosts"]["b1"]["listens"]["router_metrics"] == 29100
    assert "router_metrics" not in plan["hosts"]["b1"]["monitoring"]["listens"]  # the router's own port


def test_group_names_a_host_outside_the_serving_nodes():
    outside = {"mon": {"ansible_host": "10.0.9.9", "inferops_prometheus_port": 19090, "inferops_grafana_port": 3300}}
    plan = build_plan(_hosts(inferops_grafana=True), monitoring_group=["mon"], outside=outside)
    mon = plan["monitoring"]
    assert (mon["host"], mon["address"], mon["ports"]) == (
        "mon",
        "10.0.9.9",
        {"prometheus": 19090, "alertmanager": 9093, "grafana": 3300},
    )
    assert all("prometheus" not in node["listens"] for node in plan["hosts"].values())


def test_cpu_nodes_have_no_dcgm_and_a_node_without_dcgm_falls_back_to_nvidia_smi():
    cpu = build_plan({"c1": {"inferops_model_path": "/m", "inferops_device": "cpu", "inferops_api_open": True}})
    assert cpu["hosts"]["c1"]["listens"] == {
        "api": 8000,
        "node_exporter": 9100,
        "prometheus": 9090,
        "alertmanager": 9093,
        "healer": 8390,
    }
    assert cpu["monitoring"]["targets"]["dcgm"] == []
    assert cpu["hosts"]["c1"]["monitoring"]["gpu_textfile"] is False
    gpu = build_plan({"g1": {**COMMON, "inferops_dcgm_exporter": False}})
    assert "dcgm_exporter" not in gpu["hosts"]["g1"]["listens"]
    assert gpu["hosts"]["g1"]["monitoring"]["gpu_textfile"] is True


def test_switched_off():
    plan = build_plan(_hosts(inferops_monitoring=False, inferops_router_host="b1"))
    assert plan["monitoring"] == {"enabled": False, "host": None, "address": None, "targets": {}}
    assert plan["hosts"]["a2"]["listens"] == {"healer": 8390}  # the replica's healer agent, not monitoring
    assert plan["hosts"]["b1"]["listens"] == {"api": 8000, "router": 30000, "router_metrics": 29000, "healer": 8390}


@pytest.mark.parametrize(
    ("hosts", "kwargs", "host", "variable", "words"),
    [
        ({"a1": {"inferops_monitoring": "perhaps"}}, {}, "a1", "inferops_monitoring", "not a boolean"),
        ({"a2": {"inferops_monitoring": False}}, {}, "a2", "inferops_monitoring", "same on every host"),
        ({}, {"monitoring_group": ["a1", "a2"]}, None, "inferops_monitoring", "one host"),
        ({"a1": {"inferops_node_exporter_port": 8000}}, {}, "a1", "inferops_node_exporter_port", "used by both"),
        ({"a1": {"inferops_prometheus_port": 22}}, {}, "a1", "inferops_prometheus_port", "SSH"),
    ],
)
def test_bad_input_names_host_and_variable(hosts, kwargs, host, variable, words):
    hv = _hosts()
    for name, extra in hosts.items():
        hv[name] = {**hv[name], **extra}
    with pytest.raises(PlanError) as err:
        build_plan(hv, **kwargs)
    assert (err.value.host, err.value.variable) == (host, variable)
    assert words in str(err.value)


def test_a_head_serving_https_is_scraped_and_probed_over_https_with_the_ca():
    tls = {"inferops_tls_cert": True, "inferops_tls_key": True, "inferops_tls_ca": True}
    plan = build_plan(_hosts(**tls))
    assert {t["scheme"] for t in plan["monitoring"]["targets"]["vllm"] + plan["monitoring"]["targets"]["sglang"]} == {
        "https"
    }
    head = plan["hosts"]["a1"]
    assert head["api_url"].startswith("https://")
    assert head["tls"]["ca_file"] is not None
    assert head["healer"]["probe"]["ca_file"] == head["tls"]["ca_file"]
