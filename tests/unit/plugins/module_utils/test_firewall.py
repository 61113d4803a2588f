"""inferops_node.firewall: each port of listens open to its classes of sources only, names resolved, SSH kept."""

from __future__ import annotations

import pytest

from ansible_collections.inferops.cluster.plugins.module_utils import _firewall
from ansible_collections.inferops.cluster.plugins.module_utils._firewall import (
    PORT_SOURCES,
    add_firewall,
    collapse,
    node_rules,
    resolve_address,
)
from ansible_collections.inferops.cluster.plugins.module_utils._plan import PlanError, build_plan

DNS = {
    "gpu1.example": ["10.0.0.1"],
    "gpu2.example": ["10.0.0.2"],
    "gpu3.example": ["10.0.1.3", "fd00::3"],
    "gpu4.example": ["10.0.1.4"],
    "router.example": ["10.0.9.9"],
}
COMMON = {
    "inferops_engine": "vllm",
    "inferops_device": "cpu",
    "inferops_model_path": "/m",
    "inferops_api_key": True,
    "inferops_api_allowed_networks": ["192.168.50.0/24", "192.168.50.7"],
}


def resolver(name):
    return DNS.get(name, [])


def rules_by_name(rules):
    return {rule["name"]: rule for rule in rules}


def two_replicas(router=None, **extra):
    hosts = {
        "gpu1": {"ansible_host": "gpu1.example", "inferops_replica": "r0"},
        "gpu2": {"ansible_host": "gpu2.example", "inferops_replica": "r0"},
        "gpu3": {"inferops_address": "gpu3.example", "ansible_host": "192.0.2.1", "inferops_replica": "r1"},
        "gpu4": {"ansible_host": "gpu4.example", "inferops_replica": "r1"},
    }
    common = {**COMMON, **extra}
    if router:
        common["inferops_router_host"] = router
    return {host: {**common, **hv} for host, hv in hosts.items()}


def planned(hostvars, others=None, monitoring=None):
    plan = build_plan(hostvars, [*hostvars, *(others or {})], None, others)
    if monitoring:
        plan["monitoring"] = monitoring
    add_firewall(plan, hostvars, others, resolver)
    return plan


def test_without_a_router_the_heads_api_is_the_public_endpoint():
    plan = planned(two_replicas())
    head = rules_by_name(plan["hosts"]["gpu1"]["firewall"])
    assert head["api"]["ports"] == "8000"
    # the replica's nodes (names resolved on the controller) and the client networks, collapsed
    assert head["api"]["from"] == ["10.0.0.1", "10.0.0.2", "192.168.50.0/24"]
    assert head["master"]["from"] == ["10.0.0.1", "10.0.0.2"]  # peers only
    assert head["ephemeral"]["from"] == ["10.0.0.1", "10.0.0.2"]
    assert head["ephemeral"]["ports"] == "32768-60999"
    assert head["ssh"] == {
        "name": "ssh",
        "ports": "22",
        "from": ["0.0.0.0/0", "::/0"],
        "why": "the controller's connection port (ansible_port): never blocked",
    }
    follower = rules_by_name(plan["hosts"]["gpu2"]["firewall"])
    # rank 1 serves nothing of the engine's; its node exporter only to the monitoring host (the first head)
    assert sorted(follower) == ["ephemeral", "healer", "node_exporter", "ssh"]
    assert follower["healer"]["from"] == ["10.0.0.1", "10.0.0.2"]  # the replica's supervisor and agents
    assert follower["node_exporter"]["from"] == ["10.0.0.1"]
    # r1: inferops_address wins over ansible_host, and a name with an IPv6 address gives both families
    r1 = rules_by_name(plan["hosts"]["gpu3"]["firewall"])
    assert r1["master"]["from"] == ["10.0.1.3", "10.0.1.4", "fd00::3"]


def test_with_a_router_clients_reach_the_router_and_the_api_only_the_router_monitoring_and_peers():
    others = {"lb": {"ansible_host": "router.example"}}
    plan = planned(two_replicas(router="lb"), others, monitoring={"host": "mon", "address": "10.0.7.7"})
    head = rules_by_name(plan["hosts"]["gpu3"]["firewall"])
    assert head["api"]["from"] == ["10.0.1.3", "10.0.1.4", "10.0.7.7", "10.0.9.9", "fd00::3"]
    assert "192.168.50.0/24" not in head["api"]["from"]
    assert "router" in head["api"]["why"] and "monitoring" in head["api"]["why"]


def test_the_router_port_on_a_serving_node_is_for_clients_monitoring_and_the_cluster():
    plan = planned(two_replicas(router="gpu1"), monitoring={"host": "gpu1", "address": "gpu1.example"})
    rules = rules_by_name(plan["hosts"]["gpu1"]["firewall"])
    assert rules["router"]["ports"] == "30000"
    # clients, the monitoring host and every node (the healers manage their heads' membership)
    cluster = ["10.0.0.1", "10.0.0.2", "10.0.1.3", "10.0.1.4", "fd00::3"]
    assert set(rules["router"]["from"]) == {*cluster, "192.168.50.0/24"}
    # r1's API from the router host (gpu1, resolved), monitoring (the same host) and r1's own nodes
    assert rules_by_name(plan["hosts"]["gpu3"]["firewall"])["api"]["from"] == [
        "10.0.0.1",
        "10.0.1.3",
        "10.0.1.4",
        "fd00::3",
    ]


def test_every_class_of_source():
    sources = {
        "peers": ["10.0.0.1", "10.0.0.2"],
        "router": ["10.0.9.9"],
        "monitoring": ["10.0.7.7"],
        "clients": ["192.168.0.0/16"],
        "cluster": ["10.0.0.1", "10.0.0.2", "10.0.1.3"],
    }
    table = {f"p_{cls}": (cls,) for cls in ("peers", "router", "monitoring", "clients", "endpoint", "cluster")}
    listens = {name: 9000 + i for i, name in enumerate(table)}
    routed = rules_by_name(node_rules("n1", listens, sources, routed=True, table=table))
    alone = rules_by_name(node_rules("n1", listens, sources, routed=False, table=table))
    for cls in ("peers", "router", "monitoring", "clients", "cluster"):
        assert routed[f"p_{cls}"]["from"] == sources[cls], cls
    assert routed["p_endpoint"]["from"] == []  # behind a router, clients go through it
    assert alone["p_endpoint"]["from"] == ["192.168.0.0/16"]  # no router: this port is the public endpoint
    assert routed["p_endpoint"]["ports"] == "9004"


def test_agreed_port_names_have_their_classes():
    assert PORT_SOURCES["healer"] == ("peers",)
    for name in ("node_exporter", "dcgm_exporter", "router_metrics"):
        assert PORT_SOURCES[name] == ("monitoring",)
    for name in ("prometheus", "alertmanager"):  # no authentication of their own: never the client networks
        assert set(PORT_SOURCES[name]) == {"monitoring", "cluster"}
    assert set(PORT_SOURCES["grafana"]) == {"monitoring", "clients"}
    assert PORT_SOURCES["ray_dashboard"] == ()  # loopback only
    sources = {"monitoring": ["10.0.7.7"], "clients": ["192.168.0.0/16"], "peers": ["10.0.0.1"]}
    rules = rules_by_name(node_rules("mon", {"grafana": 3000, "node_exporter": 9100}, sources, routed=True))
    assert rules["grafana"]["from"] == ["10.0.7.7", "192.168.0.0/16"]
    assert rules["node_exporter"]["from"] == ["10.0.7.7"]


def test_an_unresolvable_name_is_refused_naming_host_and_variable():
    hostvars = two_replicas()
    hostvars["gpu2"]["ansible_host"] = "nowhere.invalid"
    with pytest.raises(PlanError) as err:
        planned(hostvars)
    assert err.value.host == "gpu2"
    assert err.value.variable == "ansible_host"
    assert "'nowhere.invalid' does not resolve" in str(err.value)
    hostvars = two_replicas()
    hostvars["gpu3"]["inferops_address"] = "gone.invalid"
    with pytest.raises(PlanError, match=r"host gpu3: inferops_address: 'gone.invalid' does not resolve"):
        planned(hostvars)


def test_an_unresolvable_router_host_is_refused_naming_it():
    with pytest.raises(PlanError, match=r"host lb: ansible_host: 'lb.invalid' does not resolve"):
        planned(two_replicas(router="lb"), {"lb": {"ansible_host": "lb.invalid"}})


def test_a_resolver_that_raises_counts_as_not_resolving():
    def broken(name):
        raise OSError("no DNS")

    with pytest.raises(PlanError, match="inferops_address"):
        resolve_address("n1", "inferops_address", "n1.example", broken)
    assert resolve_address("n1", "inferops_address", "::ffff:10.1.2.3", None) == ["10.1.2.3"]


def test_a_port_equal_to_the_connection_port_is_refused():
    with pytest.raises(PlanError, match=r"host n1: inferops_healer_port: port 2222 is the controller's connection"):
        node_rules("n1", {"api": 8000, "healer": 2222}, {}, routed=False, ssh_port=2222)
    rules = node_rules("n1", {"api": 8000}, {}, routed=False, ssh_port=2222)
    assert rules[0]["name"] == "ssh" and rules[0]["ports"] == "2222"


def test_the_plan_refuses_an_api_port_equal_to_ansible_port():
    hostvars = two_replicas(inferops_api_port=2200)
    hostvars["gpu1"]["ansible_port"] = 2200
    with pytest.raises(PlanError, match=r"host gpu1: inferops_api_port: port 2200 is this host's ansible_port"):
        planned(hostvars)


def test_a_port_without_sources_is_a_bug_not_an_open_port():
    with pytest.raises(ValueError, match=r"no entry in _firewall\.PORT_SOURCES"):
        node_rules("n1", {"mystery": 1234}, {}, routed=False)


def test_client_networks_are_checked():
    hostvars = two_replicas(inferops_api_allowed_networks="10.0.0.0/8")
    with pytest.raises(PlanError, match=r"host gpu1: inferops_api_allowed_networks: must be a list"):
        planned(hostvars)
    hostvars = two_replicas(inferops_api_allowed_networks=["office.example"])
    with pytest.raises(PlanError, match=r"inferops_api_allowed_networks: 'office.example' is not an address or CIDR"):
        planned(hostvars)


def test_collapse_merges_overlaps_nft_would_refuse():
    assert collapse(["10.0.0.1", "10.0.0.0/24", "fd00::1", "10.0.0.1", "192.168.1.5/32"]) == [
        "10.0.0.0/24",
        "192.168.1.5",
        "fd00::1",
    ]


def test_ssh_port_from_ansible_port():
    hostvars = two_replicas()
    hostvars["gpu1"]["ansible_port"] = 2222
    plan = planned(hostvars)
    assert rules_by_name(plan["hosts"]["gpu1"]["firewall"])["ssh"]["ports"] == "2222"
    assert rules_by_name(plan["hosts"]["gpu2"]["firewall"])["ssh"]["ports"] == "22"
    assert _firewall.EPHEMERAL_DEFAULT == "32768-60999"


def test_open_webui_on_the_router_host_is_for_clients_only():
    hostvars = two_replicas(router="gpu1")
    hostvars["gpu1"].update(open_webui_enabled=True, open_webui_port=8080)
    hostvars["gpu3"].update(open_webui_enabled=True)  # not the router host: runs no UI
    plan = planned(hostvars)
    assert plan["hosts"]["gpu1"]["listens"]["open_webui"] == 8080
    assert "open_webui" not in plan["hosts"]["gpu3"]["listens"]
    rule = rules_by_name(plan["hosts"]["gpu1"]["firewall"])["open_webui"]
    assert rule["from"] == ["192.168.50.0/24"]
    hostvars["gpu1"]["open_webui_port"] = 30000  # the router's port
    with pytest.raises(
        PlanError, match=r"host gpu1: open_webui_port: port 30000 is used by both router and open_webui"
    ):
        planned(hostvars)
    hostvars["gpu1"]["open_webui_port"] = 22
    with pytest.raises(PlanError, match=r"host gpu1: open_webui_port: port 22 is the controller's"):
        planned(hostvars)
