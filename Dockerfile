# syntax=docker/dockerfile:1
#
# sv0 pipeline: one image for every role. Its entrypoint is the `sv0` binary, so the role is the
# command: `worker`, `scheduler`, `admin-api`, `migrate`, `token …`, `ctl …` (docker-compose.yml
# runs each; ops/deploy/README.md says how).
#
#   docker build -t sv0:local .
#
# Two stages:
# - builder: the official Rust image at the toolchain this workspace is built and tested with
#   (rustc 1.95; Cargo.toml's `rust-version = "1.88"` is the floor, edition 2024 needs ≥ 1.85, and
#   the locked dependencies are only known to build with the tested one). Cargo's registry, git
#   checkouts and `target/` live in BuildKit cache mounts, so a rebuild after a source change
#   recompiles the workspace's crates, not their hundreds of dependencies. No native library is
#   needed: TLS is rustls, and aws-lc-sys and ring build with the image's C compiler alone.
# - runtime: Debian slim of the same release as the builder (so the glibc the binary was linked
#   against is the one it runs on), ca-certificates (for MongoDB over TLS, Key Vault and the
#   connectors' APIs), a non-root user, two binaries and the connector registry:
#     /usr/local/bin/sv0                 the one binary (every role);
#     /usr/local/bin/sv0-demo-connector  the synthetic connector: it reads only the files it is
#       given and refuses to run without its credential;
#     /etc/sv0/connectors.toml           (ops/deploy/connectors.toml) which program scans each
#       connector kind: here kind `demo` → /usr/local/bin/sv0-demo-connector. SV0_CONNECTORS
#       points at it, so the worker, the admin API and `migrate` read it. An instance names a
#       kind, never a program; an instance of kind `demo` scans the demo clouds in this image.
#       Real connectors go into an image built FROM this one, with their executables and its
#       own registry file in place of this one (or elsewhere, SV0_CONNECTORS naming it).
#   The worker runs every connector confined (Landlock, seccomp, rlimits), as the worker's own
#   user (uid 10001, not root). The host's kernel must offer Landlock (Linux 5.13 or later, the
#   LSM enabled) and seccomp filters, or the worker refuses to start.
#
# No secret is baked in: the MongoDB URI, tenant credentials (`SV0_TENANT_*`), Key Vault settings
# and API tokens reach the containers at run time (see docker-compose.yml). There is no
# HEALTHCHECK: the orchestrator (compose) owns health checks, per role, against the HTTP endpoints
# each role serves. Without curl in the image, they speak HTTP through bash's /dev/tcp.

# RUST_VERSION the builder's Rust toolchain: the one the workspace is tested with.
ARG RUST_VERSION=1.95.0
# DEBIAN_RELEASE the Debian release of both stages (the binary's glibc is the runtime's).
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# The whole workspace (less .dockerignore): `cargo build -p` still reads every member's manifest.
COPY . .
# The binaries are copied out of the cache mount: a cache mount is not part of the image.
RUN --mount=type=cache,id=sv0-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=sv0-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=sv0-target,target=/src/target,sharing=locked \
    cargo build --release --locked --no-default-features -p sv0 -p sv0-demo-connector \
 && install -D -m 0755 -t /out target/release/sv0 target/release/sv0-demo-connector

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid (10001), so mounted secret files can be owned by it on the host.
RUN groupadd --system --gid 10001 sv0 \
 && useradd --system --uid 10001 --gid sv0 --home-dir /home/sv0 --create-home \
      --shell /usr/sbin/nologin sv0
COPY --from=builder /out/sv0 /out/sv0-demo-connector /usr/local/bin/
# Root's and read-only to the sv0 user: what runs is the image's choice, not the container's.
COPY --chmod=0644 ops/deploy/connectors.toml /etc/sv0/connectors.toml
ENV SV0_CONNECTORS=/etc/sv0/connectors.toml
LABEL org.opencontainers.image.title="sv0" \
      org.opencontainers.image.description="sv0 pipeline: connector scans and their stages on a MongoDB job queue" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 10001:10001
WORKDIR /home/sv0
ENTRYPOINT ["sv0"]
CMD ["--help"]
