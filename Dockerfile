# rlm-async serve in a container: docs/deploy.md (what the sandbox needs here, probes,
# metrics, a Kubernetes example).
#   docker build -t rlm-async .
#   docker run --rm -p 8000:8000 rlm-async --demo --host 0.0.0.0
FROM python:3.11-slim

# bubblewrap and libseccomp2: two layers of the REPL sandbox (the child loads libseccomp by
# its soname). bwrap needs user namespaces, which Docker's default profiles refuse: without
# them the sandbox runs without that layer and says so (docs/deploy.md). Not pinned: the
# slim tag's Debian release fixes the versions, and pins break when the mirror drops them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap libseccomp2 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
# This checkout with its server extra; its own pyproject.toml bounds the dependencies.
# hadolint ignore=DL3013
RUN pip install ".[server]" && rm -rf /build

# Not root: the server, and the REPL children it starts, run as this user. Numeric in USER
# so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
RUN groupadd --system --gid 10001 rlm \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/rlm \
        --shell /usr/sbin/nologin rlm
USER 10001:10001
WORKDIR /home/rlm

EXPOSE 8000
# The slim image has no curl: the probe is the image's own Python.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=4)"]

# SIGTERM (docker stop, Kubernetes) reaches rlm-async serve directly (exec form, no shell):
# /readyz fails for --drain-delay seconds, then runs in flight get --drain-timeout seconds.
# Give the container a grace period above their sum (docker stop --time 70).
STOPSIGNAL SIGTERM
ENTRYPOINT ["rlm-async", "serve"]
CMD ["--host", "0.0.0.0", "--port", "8000", "--workers", "1", "--drain-delay", "5", "--drain-timeout", "60"]
