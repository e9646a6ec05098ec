# syntax=docker/dockerfile:1
# PostgreSQL 15 + pgvector + uhok_embed, with paraphrase-multilingual-MiniLM-L12-v2 installed
# as the default model. The build stage runs the same scripts the tests use.
#
#   docker build -t uhok_embed .
#   docker run -e POSTGRES_PASSWORD=secret -p 5432:5432 uhok_embed
#   psql -h localhost -U postgres -c 'CREATE EXTENSION uhok_embed CASCADE' -c "SELECT uhok_embed('갈비탕')"

ARG PG_MAJOR=15

FROM postgres:${PG_MAJOR}-bookworm AS build
ARG PG_MAJOR
ENV PG_CONFIG=/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config \
    PATH=/root/.cargo/bin:${PATH}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0
WORKDIR /src
COPY . .
# Dependencies (server headers, clang, pgvector, cargo-pgrx), the extension (release build),
# and the product model from the Hugging Face hub.
RUN scripts/install-deps.sh \
    && scripts/build-extension.sh --release \
    && scripts/install-models.sh --hub-only

FROM postgres:${PG_MAJOR}-bookworm
ARG PG_MAJOR
# pgvector from the PostgreSQL project's apt repository, which the official image already uses.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends "postgresql-${PG_MAJOR}-pgvector" \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/lib/postgresql/${PG_MAJOR}/lib/uhok_embed.so /usr/lib/postgresql/${PG_MAJOR}/lib/
COPY --from=build /usr/share/postgresql/${PG_MAJOR}/extension/uhok_embed* /usr/share/postgresql/${PG_MAJOR}/extension/
# The models live outside the major's share directory (README, Models), linked from it.
COPY --from=build /var/lib/uhok_embed /var/lib/uhok_embed
RUN ln -s /var/lib/uhok_embed "/usr/share/postgresql/${PG_MAJOR}/uhok_embed"
