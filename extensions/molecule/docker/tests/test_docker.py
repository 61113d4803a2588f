"""What the docker role left on the node."""

from __future__ import annotations

import json

VERSION = "20.10.24+dfsg1-1+deb12u1+b6"


def test_docker_io_installed_at_the_pin_and_held(host):
    pkg = host.package("docker.io")
    assert pkg.is_installed
    assert pkg.version == VERSION
    assert host.check_output("dpkg-query -W -f='${Status}' docker.io").startswith("hold ")


def test_daemon_json_merged_foreign_keys_kept(host):
    data = json.loads(host.file("/etc/docker/daemon.json").content_string)
    # keys written before the role ran survive
    assert data["insecure-registries"] == ["registry.lab:5000"]
    assert data["labels"] == ["site=lab"]
    # nested log-opts merged, not replaced
    assert data["log-opts"] == {"labels": "site", "max-size": "100m", "max-file": "3"}
    assert data["data-root"] == "/var/lib/docker-data"
    assert data["registry-mirrors"] == ["https://docker.m.daocloud.io"]
    assert data["log-driver"] == "json-file"


def test_proxy_drop_in(host):
    drop_in = host.file("/etc/systemd/system/docker.service.d/http-proxy.conf")
    assert drop_in.mode == 0o644
    assert 'Environment="HTTP_PROXY=http://proxy.lab:3128"' in drop_in.content_string
    assert 'Environment="NO_PROXY=localhost,127.0.0.1,.lab"' in drop_in.content_string
    env = host.check_output("systemctl show docker --property=Environment")
    assert "HTTPS_PROXY=http://proxy.lab:3128" in env


def test_user_in_docker_group(host):
    assert "docker" in host.user("operator1").groups


def test_ca_bundle_trusted(host):
    assert host.file("/usr/local/share/ca-certificates/inferops-ca.crt").exists
    assert host.file("/etc/ssl/certs/inferops-ca.pem").is_symlink


def test_docker_service_runs_with_the_merged_config(host):
    svc = host.service("docker")
    assert svc.is_enabled
    assert svc.is_running
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["DockerRootDir"] == "/var/lib/docker-data"
    assert "https://docker.m.daocloud.io/" in info["RegistryConfig"]["Mirrors"]
    assert "site=lab" in info["Labels"]
