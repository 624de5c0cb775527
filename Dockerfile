# Same server and settings as `make serve`, as a non-root user, data directory as a volume.
# numba caches compiled kernels under /tmp, so `docker run --read-only --tmpfs /tmp` works.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY registry registry
COPY monitor monitor
RUN python -m venv /opt/driftgate && /opt/driftgate/bin/pip install --no-cache-dir '.[demo,explain]'

FROM python:3.11-slim
RUN useradd --system --create-home --uid 10001 driftgate \
    && mkdir /data && chown driftgate /data
COPY --from=build /opt/driftgate /opt/driftgate
ENV PATH=/opt/driftgate/bin:$PATH \
    DRIFTGATE_HOME=/data \
    DRIFTGATE_HOST=0.0.0.0 \
    DRIFTGATE_PORT=8000 \
    NUMBA_CACHE_DIR=/tmp/numba \
    PYTHONUNBUFFERED=1
USER driftgate
VOLUME /data
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2).status != 200)"
CMD ["driftgate", "serve", "--demo"]
