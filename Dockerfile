# rpc-proxy in a small image: built in Rust's Debian image, shipped on
# distroless (glibc, CA certificates, no shell, no package manager), run as
# an unprivileged user.
#
#   docker build -t rpc-proxy .
#   docker run --rm -p 8545:8545 -v "$PWD/proxy.toml:/etc/rpc-proxy/proxy.toml:ro" rpc-proxy
#
# The commit shown by `rpc-proxy --version` comes from the build argument
# (the build context has no .git): docker build --build-arg COMMIT=$(git rev-parse --short HEAD) .

FROM rust:1.95-bookworm AS build
ARG COMMIT=unknown
ENV RPC_PROXY_COMMIT=${COMMIT} CARGO_TERM_COLOR=never
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p rpc-proxy --bin rpc-proxy \
 && install -D -m 0755 target/release/rpc-proxy /out/rpc-proxy \
 && install -D -m 0644 examples/proxy/proxy.toml /out/proxy.toml

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/rpc-proxy /usr/local/bin/rpc-proxy
COPY --from=build /out/proxy.toml /etc/rpc-proxy/proxy.example.toml
# 65532: distroless' `nonroot` user. The config is mounted read-only.
USER 65532:65532
EXPOSE 8545 9100
ENV RPC_PROXY_CONFIG=/etc/rpc-proxy/proxy.toml
ENTRYPOINT ["/usr/local/bin/rpc-proxy"]
