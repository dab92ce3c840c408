# latchkey: the server and its web site in one small image.
#
#   docker build -t latchkey .        (or `docker compose up`, see compose.yaml)
#
# Stages, in the order the legacy builder needs (it builds every stage up to the target):
#   runtime-base  Debian slim, a user without privileges, the health check and defaults;
#   prebuilt      runtime-base plus binaries built outside Docker, from docker/prebuilt/
#                 (`--target prebuilt`; CI uses it, since its machines cannot pull images and
#                 must not compile twice: see scripts/test-image.sh; in a default build it
#                 copies only that folder's README, and nothing uses it);
#   build         compiles the server (release) and the site (scripts/build-site.sh);
#   runtime       the default: runtime-base plus what `build` made.
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUNTIME_IMAGE} AS runtime-base
# No RUN here: the stage must build on a bare imported root filesystem, without a network.
# Production by default: it refuses to start without JWT_SECRET, SMTP_URL and an https://
# PUBLIC_URL (and DB_URI, or nothing persists). Metrics go to a port of their own: publish
# 8080, let only the scraper reach 9100.
ENV APP_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    METRICS_ADDR=0.0.0.0:9100 \
    SITE_DIR=/app/site \
    LOG_FORMAT=json
WORKDIR /app
EXPOSE 8080 9100
# A numeric user needs no /etc/passwd entry; it owns nothing in the image.
USER 10001:10001
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 \
    CMD ["/app/latchkey", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/latchkey"]
CMD ["serve"]

FROM runtime-base AS prebuilt
COPY docker/prebuilt/ /app/

FROM ${RUST_IMAGE} AS build
# The site's build needs npm (binaryen's wasm-opt) besides what scripts/build-site.sh installs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin latchkey \
    && bash scripts/build-site.sh \
    && mkdir -p /out \
    && cp target/release/latchkey /out/latchkey \
    && cp -r web/dist/site /out/site

FROM runtime-base AS runtime
# For TLS to MongoDB Atlas or an SMTP relay.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/ /app/
