# hotsync's container image: `hotsync run` (the daemon of deploy/), or any other subcommand.
#
#   docker build -t hotsync:0.1.0 .
#   docker run --rm hotsync:0.1.0 --help
#
# Two stages: the builder compiles the release binary; the runtime image holds the binary, its shared
# libraries and CA certificates, and runs as the non-root user 65532. libgit2 and libssh2 are linked
# into the binary (no git executable is needed); OpenSSL and zlib are the system's.

FROM rust:1-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole crate (see .dockerignore): Cargo.toml names the benches and tests, which cargo wants to
# find even when it builds the binary alone; src/ embeds files from scripts/ and examples-repo/.
COPY . .
# The cache mounts keep the registry and the target directory between builds (BuildKit); the binary
# is copied out because the target directory is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin hotsync \
 && install -D -m 0755 target/release/hotsync /out/hotsync

FROM debian:bookworm-slim
# ca-certificates: HTTPS to Git hosts (libgit2 uses OpenSSL and the system trust store).
# libssl3: OpenSSL for libgit2 and libssh2. zlib1g and libgcc-s1 are already in the base image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 hotsync \
 && useradd --system --uid 65532 --gid 65532 --home-dir /var/cache/hotsync --no-create-home \
      --shell /usr/sbin/nologin hotsync \
 && install -d -o 65532 -g 65532 -m 0750 /var/cache/hotsync
COPY --from=builder /out/hotsync /usr/local/bin/hotsync
USER 65532:65532
ENV HOTSYNC_CACHE_DIR=/var/cache/hotsync
WORKDIR /var/cache/hotsync
EXPOSE 8080
ENTRYPOINT ["hotsync"]
CMD ["run"]
