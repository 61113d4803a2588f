"""Source settings checks, the Hub's tree metadata, download tool argv."""

from __future__ import annotations

import pytest

from ansible_collections.inferops.cluster.plugins.module_utils import _weights_source as ws

COMMIT = "56d4cbbb4d29f4355bab4b9a39ccb717a14ad5ad"
SHA = "d005c7f5b5ed4cfd24fa80448ddb52f69fa7f89ae9cc0216c863f87bdd9d53bf"


@pytest.mark.parametrize(
    ("params", "errors"),
    [
        ({"source": "hf", "repo": "deepseek-ai/DeepSeek-R1", "revision": COMMIT}, []),
        ({"source": "hf", "repo": "deepseek-ai/DeepSeek-R1", "revision": "main"}, ["model_weights_revision"]),
        ({"source": "hf", "repo": "x/y", "revision": "main", "require_commit": False}, []),
        ({"source": "hf", "repo": "", "revision": COMMIT}, ["model_weights_repo"]),
        (
            {"source": "hf", "repo": "x/y", "revision": COMMIT, "endpoint": "hf-mirror.com"},
            ["model_weights_hf_endpoint"],
        ),
        ({"source": "hf", "repo": "x/y", "revision": COMMIT, "endpoint": "https://hf-mirror.com"}, []),
        ({"source": "modelscope", "repo": "deepseek-ai/DeepSeek-R1", "revision": "master"}, []),
        ({"source": "modelscope", "repo": "bad repo"}, ["model_weights_repo"]),
        ({"source": "local", "url": "/mnt/nfs/models/x"}, []),
        ({"source": "local", "url": "models/x"}, ["model_weights_url"]),
        ({"source": "rsync", "url": "rsync://cache01/models/x"}, []),
        ({"source": "rsync", "url": "cache01::models/x"}, []),
        ({"source": "rsync", "url": "/local"}, ["model_weights_url"]),
        ({"source": "http", "url": "https://cache.example/models/x"}, []),
        ({"source": "http", "url": "ftp://x"}, ["model_weights_url"]),
        ({"source": "s3"}, ["model_weights_source"]),
    ],
)
def test_check_source(params, errors):
    got = ws.check_source(params)
    assert [e.split(" ", maxsplit=1)[0] for e in got] == errors


def test_hf_expected_and_fill_known():
    items = [
        {"path": "model-00001-of-00002.safetensors", "size": 3000000, "lfs_sha256": SHA.upper()},
        {"path": "config.json", "size": 8, "lfs_sha256": None},
    ]
    exp = ws.hf_expected(items)
    assert list(exp) == ["config.json", "model-00001-of-00002.safetensors"]
    assert exp["model-00001-of-00002.safetensors"]["sha256"] == SHA
    assert exp["config.json"]["sha256"] is None
    source = {"kind": "hf", "repo": "a/b", "revision": COMMIT}
    prev = {"source": source, "files": {"config.json": {"size": 8, "sha256": "1" * 64}}}
    assert ws.fill_known(exp, prev, source)["config.json"]["sha256"] == "1" * 64
    # another revision, or another size: computed again
    assert ws.fill_known(exp, prev, {**source, "revision": "0" * 40})["config.json"]["sha256"] is None
    prev_other_size = {"source": source, "files": {"config.json": {"size": 9, "sha256": "1" * 64}}}
    assert ws.fill_known(exp, prev_other_size, source)["config.json"]["sha256"] is None


def test_source_identity_never_holds_the_token():
    ident = ws.source_identity(
        {"source": "hf", "repo": "a/b", "revision": COMMIT, "token": "hf_secret", "allow_patterns": ["*.json"]}
    )
    assert ident == {"kind": "hf", "repo": "a/b", "revision": COMMIT, "allow_patterns": ["*.json"]}
    assert "hf_secret" not in repr(ident)


def test_modelscope_argv_as_operators_run_it():
    argv = ws.modelscope_argv(
        "/opt/v/bin/modelscope", "deepseek-ai/DeepSeek-R1", "/data/R1", "master", ["*.safetensors"], ["*.pth"], 4
    )
    assert argv == [
        "/opt/v/bin/modelscope",
        "download",
        "--model",
        "deepseek-ai/DeepSeek-R1",
        "--local_dir",
        "/data/R1",
        "--revision",
        "master",
        "--include",
        "*.safetensors",
        "--exclude",
        "*.pth",
        "--max-workers",
        "4",
    ]


def test_join_url_quotes_paths():
    assert ws.join_url("https://c/models/x/", "sub dir/a.json") == "https://c/models/x/sub%20dir/a.json"
