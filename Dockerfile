# syntax=docker/dockerfile:1
#
# sessiond container image.
#
#   docker build -t sessiond .
#   docker run --rm sessiond --help
#
# The build stage compiles the one `sessiond` binary with the locked dependency set; protoc comes
# from the `protoc-bin-vendored` crate, so no system package is needed. The runtime stage holds
# only that binary on debian:bookworm-slim (same glibc as the build stage), running as a fixed
# non-root UID so Kubernetes `runAsNonRoot` can verify it. bookworm-slim keeps `bash`, which the
# compose health checks use to probe /readyz without adding curl.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Only what the build reads (.dockerignore keeps the context to these, too). benches/ is needed
# because Cargo.toml declares a [[bench]] target, and cargo checks every declared target's path.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY benches ./benches
COPY src ./src
# Cache mounts keep the crate registry and the target directory between builds (BuildKit); the
# binary is copied out of the cached target directory, which does not persist in the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sessiond \
    && install -D -m 0755 target/release/sessiond /out/sessiond

FROM ${RUNTIME_IMAGE}
ARG SESSIOND_UID=10001
LABEL org.opencontainers.image.title="sessiond" \
      org.opencontainers.image.description="Session authority: issues, refreshes, validates, lists and revokes login sessions over gRPC" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric user and group, no login shell, no home; the data directory (embedded store,
# generated keys) belongs to it, mode 0700 like the key directory sessiond creates itself.
RUN groupadd --system --gid "${SESSIOND_UID}" sessiond \
    && useradd --system --uid "${SESSIOND_UID}" --gid "${SESSIOND_UID}" \
       --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sessiond \
    && install -d -o "${SESSIOND_UID}" -g "${SESSIOND_UID}" -m 0700 \
       /var/lib/sessiond /var/lib/sessiond/keys
COPY --from=build /out/sessiond /usr/local/bin/sessiond
USER ${SESSIOND_UID}:${SESSIOND_UID}
WORKDIR /var/lib/sessiond
VOLUME ["/var/lib/sessiond"]
# 50051: gRPC (SessionService, Envoy ext_authz, health, reflection)
# 8080: HTTP (/healthz, /readyz, /metrics, /oauth2/introspect, /.well-known/jwks.json)
EXPOSE 50051 8080
ENTRYPOINT ["sessiond"]
# Listening on 0.0.0.0 requires configured callers (--callers-file / SESSIOND_CALLERS_FILE):
# without them sessiond refuses a non-loopback address, so mount a callers file.
CMD ["serve", "--grpc-addr", "0.0.0.0:50051", "--http-addr", "0.0.0.0:8080", "--data-dir", "/var/lib/sessiond"]
