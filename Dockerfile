# syntax=docker/dockerfile:1
# jellyfin-export-scheduler container image.
#
# Build:  docker build -t jellyfin-export-scheduler .
# Run:    see docker-compose.yml, the README's "Install with Docker" and docs/docker.md.
#
# Two stages: the official Rust image compiles the release binary; the runtime image is
# distroless (glibc, CA certificates, /etc/passwd; no shell, no package manager) and runs
# as its built-in nonroot user (65532).

FROM rust:1-trixie AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The manifest names the benchmark target, so cargo needs its file to read the manifest.
COPY benches ./benches
# The registry and target caches only speed up rebuilds; the binary is copied out of the
# cached target directory so the next stage sees it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release \
 && install -D -m 0755 target/release/jellyfin-export-scheduler /out/usr/local/bin/jellyfin-export-scheduler \
 && install -d -m 0700 -o 65532 -g 65532 /out/var/lib/jellyfin-export-scheduler \
 && install -d -m 0755 /out/etc/jellyfin-export-scheduler

FROM gcr.io/distroless/cc-debian13:nonroot
# Set by tests/container.sh from Cargo.toml and git; "unknown" in a plain build.
ARG VERSION=unknown
ARG REVISION=unknown
LABEL org.opencontainers.image.title="jellyfin-export-scheduler" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.description="Runs the Jellyfin Migrator plugin's export on cron schedules across Jellyfin servers and keeps a per-server history" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian13:nonroot"
# The state directory belongs to nonroot (0700), so a fresh named volume starts writable.
COPY --from=build /out/ /
# JSON logs for container log collectors are one switch away:
#   -e JELLYFIN_EXPORT_SCHEDULER_LOG_FORMAT=json   (or [daemon] log_format = "json")
ENV JELLYFIN_EXPORT_SCHEDULER_CONFIG=/etc/jellyfin-export-scheduler/config.toml
# Docker and Compose secrets are files in /run/secrets: with this, the same config works
# here and under systemd (LoadCredential=), e.g.
#   api_key_file = "${CREDENTIALS_DIRECTORY}/living-room"   (config/minimal.toml)
ENV CREDENTIALS_DIRECTORY=/run/secrets
VOLUME ["/var/lib/jellyfin-export-scheduler"]
USER 65532:65532
# No shell in the image: the binary checks its own /healthz ([daemon] listen).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/jellyfin-export-scheduler", "healthcheck"]
# Exec form: the daemon is PID 1 and receives SIGTERM (graceful stop) and SIGHUP (reload).
ENTRYPOINT ["/usr/local/bin/jellyfin-export-scheduler"]
CMD ["run"]
