# Tessera container image: build with the Rust toolchain, run on slim Debian.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin tessera

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates openssl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/tessera tessera \
    && mkdir -p /var/lib/tessera/keys && chown -R tessera /var/lib/tessera
COPY --from=build /src/target/release/tessera /usr/local/bin/tessera
USER tessera
ENV TESSERA_PUBLIC_ADDR=0.0.0.0:8080 \
    TESSERA_ADMIN_ADDR=0.0.0.0:8081 \
    TESSERA_KEYS_DIR=/var/lib/tessera/keys \
    TESSERA_LOG_FORMAT=json
EXPOSE 8080 8081
ENTRYPOINT ["tessera"]
CMD ["serve"]
