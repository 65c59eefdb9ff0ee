# healthgate and mi-sim in one small image. healthgate is the production build (without the
# `demo` feature: no `healthgate demo`, no simulator inside); mi-sim is its own binary, for
# docker-compose.yml's simulated nodes.
#   docker build -t healthgate .
#   docker run --rm -v $PWD/conf/compose.yaml:/etc/healthgate/healthgate.yaml:ro healthgate
FROM rust:1.95-bookworm AS build
# Pingora's zlib-ng dependency builds with cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The release profile keeps line tables for profiling; an image does not need them.
ENV CARGO_PROFILE_RELEASE_DEBUG=0
RUN cargo build --release --locked -p healthgate --no-default-features --bin healthgate \
 && cargo build --release --locked -p mi-sim --bin mi-sim \
 && strip target/release/healthgate target/release/mi-sim

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home healthgate
COPY --from=build /src/target/release/healthgate /src/target/release/mi-sim /usr/local/bin/
COPY conf/compose.yaml /etc/healthgate/healthgate.yaml
# The built-in config names its example certificates relative to /etc/healthgate (as
# docker-compose mounts them); real deployments mount their own (docs/operations.md).
COPY conf/tls /etc/healthgate/conf/tls
WORKDIR /etc/healthgate
USER healthgate
# Traffic, TLS traffic, admin (/metrics, /status, status page).
EXPOSE 8280 8443 9300
ENTRYPOINT ["healthgate"]
CMD ["--config", "/etc/healthgate/healthgate.yaml"]
