# Builds the three binaries: pantheon (CLI, `pantheon up` = projector + prober), and the
# separate pantheon-projector and pantheon-prober services.
FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
      -p pantheon -p pantheon-projector-service -p pantheon-prober-service

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system pantheon
COPY --from=build /src/target/release/pantheon /src/target/release/pantheon-projector \
     /src/target/release/pantheon-prober /usr/local/bin/
USER pantheon
ENTRYPOINT []
CMD ["pantheon", "up"]
