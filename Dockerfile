# keplor-agent container image.
#
#   docker build -t keplor-agent .
#   docker run --rm -e KEPLOR_KAFKA__BROKERS=kafka:9092 -e KEPLOR_HTTP__LISTEN=0.0.0.0:8686 \
#     -p 8686:8686 -v keplor-data:/var/lib/keplor keplor-agent
#
# Two stages on the same Debian release (bookworm), so the shared libraries the binary was linked
# against in the builder are the ones the runtime installs. `.ci/image-check` checks that every
# library the binary links belongs to a package installed below (there is no container engine
# in CI); docs/operations.md has the details.

# ---- builder ---------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder

# What the bundled librdkafka and zstd build with (configure/make, no cmake): a C toolchain,
# pkg-config, zlib (gzip), OpenSSL (TLS, SASL SCRAM) and libcurl (SASL OAUTHBEARER OIDC).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential pkg-config zlib1g-dev libssl-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
# --locked: exactly the dependency versions of Cargo.lock. The binary is copied out of the
# cache-mounted target directory inside the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p keplor-agent \
 && install -D -m 0755 target/release/keplor-agent /out/keplor-agent

# ---- runtime ---------------------------------------------------------------------------------
FROM debian:bookworm-slim

# Only the shared libraries the binary links (libssl3: libssl + libcrypto, libcurl4, zlib1g;
# libc6 and libgcc-s1 are in the base image) and the CA roots for TLS to brokers and to a
# schema registry.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libcurl4 libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/*

# A non-root user with a fixed uid/gid (the Helm chart's securityContext and fsGroup use 10001).
RUN groupadd --system --gid 10001 keplor \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/keplor \
      --shell /usr/sbin/nologin keplor \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/keplor \
 && install -d -m 0755 /etc/keplor

COPY --from=builder /out/keplor-agent /usr/local/bin/keplor-agent
# A default configuration (the Helm chart's; data_dir = /var/lib/keplor). Kubernetes mounts its
# ConfigMap over /etc/keplor; with `docker run`, mount your own or override keys with
# KEPLOR_<SECTION>__<KEY> variables.
COPY helm/keplor-agent/files/agent.toml /etc/keplor/agent.toml

# At most two glibc malloc arenas: with one per thread that allocates (rdkafka's, the query
# pool's, the HTTP workers'), freed memtables and decoded segments stayed in arenas of their
# own and the hour-long soak's anonymous memory climbed 396 -> 477 MiB; with two it held at
# 215-238 MiB (RELIABILITY.md, "Agent: soak"). Set it otherwise with `docker run -e`.
ENV MALLOC_ARENA_MAX=2
# Transparent huge pages for malloc's memory (glibc 2.35+; the kernel's default THP mode,
# `madvise`, needs this advice): decoded segment columns are gigabytes at 100M events, and a
# query that reads the scattered rows of one user misses the TLB on nearly every row with 4 KiB
# pages. At 100M events an aggregate by user took 12.9 ms without, 1.7 ms with
# (docs/performance.md).
ENV GLIBC_TUNABLES=glibc.malloc.hugetlb=1

USER 10001:10001
WORKDIR /var/lib/keplor
EXPOSE 8686
ENTRYPOINT ["keplor-agent"]
CMD ["run", "--config", "/etc/keplor/agent.toml"]
