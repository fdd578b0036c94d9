# syntax=docker/dockerfile:1
#
# The chat server image. Only the `server` package is built.
#
#   docker build -t e2e-chat-server .
#   docker run -p 8080:8080 -e MONGODB_URI=mongodb://… e2e-chat-server
#
# Stages: `chef` (a Rust image with cargo-chef) → `planner` (reduces the workspace to a
# recipe of manifests) → `builder` (compiles the dependencies from the recipe — a layer that
# is rebuilt only when Cargo.toml/Cargo.lock change — then the server) → `runtime` (slim
# Debian, non-root user). The server listens on $PORT (Heroku sets it; 8080 here).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
# make: the jemalloc allocator (tikv-jemalloc-sys) is built from C sources.
RUN apt-get update && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# The cached dependency layer.
RUN cargo chef cook --release --locked --package server --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --package server --bin server \
    && install -D --mode=0755 target/release/server /out/server

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: TLS to managed MongoDB (Atlas). The data directory is only used by the
# embedded store (when MONGODB_URI is unset); mount a volume there to keep it.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 chat \
    && useradd --system --uid 10001 --gid chat --home-dir /nonexistent --shell /usr/sbin/nologin chat \
    && install -d --owner=chat --group=chat --mode=0750 /data
COPY --from=builder /out/server /usr/local/bin/server
USER 10001:10001
ENV PORT=8080 \
    BIND_ADDRESS=0.0.0.0 \
    DATA_DIR=/data \
    RUST_LOG=info
EXPOSE 8080
CMD ["/usr/local/bin/server"]
