"""Grafana's provisioning as the grafana role writes it: the data source on the plan's Prometheus, the dashboard
provider and the collection's dashboards."""

from __future__ import annotations

import json

import pytest
import yaml


def test_data_source_points_at_the_plans_prometheus(host):
    data = yaml.safe_load(host.file("/etc/grafana/provisioning/datasources/inferops.yml").content_string)
    (source,) = data["datasources"]
    assert (source["uid"], source["type"], source["url"]) == (
        "inferops-prometheus",
        "prometheus",
        "http://10.0.0.1:9090",
    )


def test_provider_reads_the_dashboards_directory(host):
    data = yaml.safe_load(host.file("/etc/grafana/provisioning/dashboards/inferops.yml").content_string)
    assert data["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/inferops"


@pytest.mark.parametrize("name", ["inferops-cluster", "inferops-nodes", "inferops-fabric"])
def test_dashboards_written(host, name):
    dashboard = json.loads(host.file(f"/var/lib/grafana/dashboards/inferops/{name}.json").content_string)
    assert dashboard["uid"] == name and dashboard["panels"]
