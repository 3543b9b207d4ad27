# configurapi-runner-ws container image (docs/operations.md#the-container).
#
#   docker build -t configurapi-runner-ws .
#   docker run -p 8000:8000 -v "$PWD/app:/app:ro" configurapi-runner-ws
#
# /app is the working directory: a config.yaml there (with its handlers/ folder) is
# served; without one the built-in default config is. Every flag is also a
# CONFIGURAPI_<FLAG> variable (`--help` lists them), and PORT sets the WebSocket port.
# JS handlers need Node: build with --build-arg INSTALL_NODE=true.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# Only the runner's binary; --locked builds exactly what Cargo.lock pins.
RUN cargo build --release --locked -p configurapi-runner-ws --bin configurapi-runner-ws \
 && cp target/release/configurapi-runner-ws /configurapi-runner-ws

FROM ${RUNTIME_IMAGE}
ARG INSTALL_NODE=false
RUN if [ "$INSTALL_NODE" = true ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends nodejs \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --system --gid 10001 configurapi \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /app configurapi \
 && mkdir -p /app
COPY --from=build /configurapi-runner-ws /usr/local/bin/configurapi-runner-ws
WORKDIR /app
USER 10001:10001

# The WebSocket port binds every address; the management API stays on 127.0.0.1 (the
# HEALTHCHECK below runs inside the container). To publish it, set
# CONFIGURAPI_MANAGEMENT_HOST=0.0.0.0 and a CONFIGURAPI_MANAGEMENT_TOKEN.
# The ports are the defaults (8000, 9100); not set here, so a platform's PORT still
# counts (CONFIGURAPI_PORT would win over it).
ENV CONFIGURAPI_HOST=0.0.0.0
# 8000 ws://, 8443 wss:// (with CONFIGURAPI_KEY and CONFIGURAPI_CERT), 9100 management.
EXPOSE 8000 8443 9100

# The image has no curl: the binary GETs /healthz itself, on the address the
# CONFIGURAPI_MANAGEMENT_* variables give (the token included). 503 while draining.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/configurapi-runner-ws", "healthcheck"]

# SIGTERM drains (answers in flight are delivered, then 1001) within
# --shutdown-timeout (5s), under `docker stop`'s 10 s grace; SIGHUP reloads.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/configurapi-runner-ws"]
