# causalkv node image: one node, serving both HTTP dialects (SPEC §2-§4).
#
#   docker build -t causalkv .                      # deps from PyPI, pinned by uv.lock
#   docker build --build-arg INSTALL_FROM=wheels -t causalkv .
#                                                   # offline: every wheel from ./wheels/
#   docker run -p 8001:8080 -e NODE_ID=A causalkv   # SyncKV-style node on host port 8001
#   docker run -p 8081:8081 -e NODE_IDENTIFIER=1 causalkv   # sharded-dialect node
#
# Build arguments:
#   BASE_IMAGE    a Debian-like image with python3 >= 3.11 and the venv module
#                 (default python:3.11-slim; scripts/docker-smoke substitutes a local
#                 debootstrap image). The builder and runtime stages share it, so the
#                 virtualenv built in one runs unchanged in the other.
#   INSTALL_FROM  "pypi" (default): export the locked, hash-pinned requirements from
#                 uv.lock and download their wheels from PyPI; "wheels": install only from
#                 the wheels/ directory of the build context (dependency wheels plus the
#                 causalkv wheel, built on a host with `uv export --frozen --no-dev`,
#                 `pip download` and `uv build`; see scripts/docker-smoke).
#   UV_VERSION    the uv used to read uv.lock in the "pypi" path.
#
# Written for both the classic builder and BuildKit: no RUN --mount, no heredocs.

ARG BASE_IMAGE=python:3.11-slim

# --------------------------------------------------------------------------------------------
# Builder: gather wheels, then install them into a self-contained virtualenv at /opt/causalkv.
# --------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder

ARG INSTALL_FROM=pypi
ARG UV_VERSION=0.13.9

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# The project metadata and lock first, so the dependency layers stay cached while only
# the source changes. "wheel[s]" is a wildcard so that the COPY succeeds when the context
# has no wheels/ directory (the PyPI path); pyproject.toml is a source that always exists.
COPY pyproject.toml uv.lock README.md /src/
COPY pyproject.toml wheel[s] /wheels/

# Dependencies. PyPI path: uv exports the lock as a requirements file with hashes, and
# pip downloads exactly those files (--require-hashes). Wheels path: nothing is fetched.
RUN set -eu; \
    python3 -m venv /opt/causalkv; \
    case "${INSTALL_FROM}" in \
      pypi) \
        python3 -m venv /opt/uv; \
        /opt/uv/bin/pip install --quiet "uv==${UV_VERSION}"; \
        /opt/uv/bin/uv export --frozen --no-dev --no-emit-project --no-header \
            --format requirements-txt --output-file /src/requirements.txt; \
        /opt/causalkv/bin/pip download --quiet --only-binary=:all: --require-hashes \
            --dest /wheels -r /src/requirements.txt ;; \
      wheels) \
        if ! ls /wheels/causalkv-*.whl >/dev/null 2>&1; then \
          echo "INSTALL_FROM=wheels needs wheels/causalkv-*.whl and its dependencies in the build context" >&2; \
          exit 1; \
        fi ;; \
      *) echo "INSTALL_FROM must be pypi or wheels, got '${INSTALL_FROM}'" >&2; exit 1 ;; \
    esac

# The project itself. In the PyPI path its wheel is built here (hatchling comes from
# PyPI through pip's isolated build); in the wheels path it is already in /wheels.
COPY src/ /src/src/
RUN set -eu; \
    if [ "${INSTALL_FROM}" = pypi ]; then \
      /opt/causalkv/bin/pip wheel --quiet --no-deps --wheel-dir /wheels /src; \
    fi; \
    /opt/causalkv/bin/pip install --quiet --no-index --find-links /wheels causalkv; \
    /opt/causalkv/bin/pip uninstall --quiet --yes pip setuptools; \
    /opt/causalkv/bin/causalkv --help >/dev/null

# --------------------------------------------------------------------------------------------
# Runtime: the base image, the virtualenv, an unprivileged user and a data volume.
# --------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="causalkv" \
      org.opencontainers.image.description="A sharded, replicated, causally consistent key-value store" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric uid/gid, so that Kubernetes' runAsNonRoot can check it and fsGroup
# can match it.
RUN groupadd --system --gid 10001 causalkv \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin causalkv \
 && mkdir -p /data \
 && chown 10001:10001 /data

COPY --from=builder /opt/causalkv /opt/causalkv

# Settings are environment variables (SPEC §2); the node reads them at start. The listen
# port is 8081 by default, or 8080 when NODE_ID or ADDRESS is set (SyncKV-style
# containers); CAUSALKV_LISTEN or PORT choose another. CAUSALKV_CLUSTER_SECRET, when set,
# must be at least 8 characters and the same on every node.
ENV PATH=/opt/causalkv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CAUSALKV_DATA_DIR=/data

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080 8081

# /ping on whatever port the node's own settings resolve to (same environment, same
# rules), so the check follows NODE_ID/ADDRESS/PORT/CAUSALKV_LISTEN. Python, not curl:
# the slim image has no curl.
HEALTHCHECK --interval=10s --timeout=4s --start-period=15s --retries=3 \
    CMD ["python3", "-c", "import urllib.request as r; from causalkv.runtime.settings import load_settings as l; s = l({}); h = s.listen_host; h = '127.0.0.1' if h in ('0.0.0.0', '') else ('::1' if h == '::' else h); h = '[' + h + ']' if ':' in h else h; r.urlopen('http://%s:%d/ping' % (h, s.listen_port), timeout=3)"]

# SIGTERM (docker stop, Kubernetes) shuts the node down cleanly within 5 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["causalkv"]
CMD ["serve"]
