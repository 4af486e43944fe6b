# syntax=docker/dockerfile:1
#
# attestgate (the webhook and the CLI) in a small non-root image:
#
#   docker build --build-arg REVISION="$(git rev-parse HEAD)" -t REGISTRY/attestgate:VERSION .
#   docker push REGISTRY/attestgate:VERSION      # then install by the digest it prints
#
# A glibc build on distroless/cc rather than a static musl one: musl's allocator is slow under
# the many-threaded allocation of TLS, JSON and Rego that a webhook does. The builder's Debian
# release (bookworm) is the runtime's (distroless cc-debian12), so the binary runs on the glibc it
# was linked against. The final image holds the binary, glibc, libgcc, CA certificates and
# /etc/passwd with the nonroot user: no shell, no package manager.

# Must equal the channel in rust-toolchain.toml (tests/chart.rs checks it).
ARG RUST_VERSION=1.95.0

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS builder
ARG RUST_VERSION
# The toolchain of the image, without the components rust-toolchain.toml lists for developers
# (rustfmt, clippy), which rustup would otherwise download.
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION} \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
# benches/ because Cargo.toml declares a [[bench]] target that cargo checks for.
COPY benches ./benches
COPY src ./src
# --locked: exactly the dependency versions of Cargo.lock, or the build fails.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin attestgate \
 && install -D -m 0755 target/release/attestgate /out/attestgate \
 && /out/attestgate --version

FROM gcr.io/distroless/cc-debian12:nonroot
ARG REVISION=unknown
LABEL org.opencontainers.image.title="attestgate" \
      org.opencontainers.image.description="Kubernetes admission webhook and CI gate that admits only images whose witness evidence passes a signed policy" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=builder /out/attestgate /attestgate
# distroless's nonroot user; numeric so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/attestgate"]
CMD ["serve", "--config", "/etc/attestgate/config.yaml"]
