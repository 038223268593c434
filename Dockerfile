# socklab as a container: a static musl binary on an empty base image, run as a non-root user.
# No shell, no libc, no CA store: the agent and the mesh need none (Kubernetes expands
# $(SOCKLAB_TOKEN) in args itself). Build: docker build -t socklab:0.1.0 .
FROM rust:1-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# crt-static: one self-contained executable (musl's libc linked in), runnable FROM scratch.
ENV RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=true
RUN cargo build --release --locked --bin socklab \
 && cp target/release/socklab /socklab

FROM scratch
COPY --from=build /socklab /socklab
# 65532: the conventional "nonroot" uid (distroless); nothing in the image belongs to it.
USER 65532:65532
EXPOSE 5301/tcp
ENTRYPOINT ["/socklab"]
CMD ["bench", "server", "--help"]
