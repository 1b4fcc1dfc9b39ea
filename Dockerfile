# syntax=docker/dockerfile:1

# Build: a static binary, with the module and build caches kept between builds
# (msgraph-sdk-go is large; a cold build takes minutes). nomsgpack drops gin's
# MessagePack codec, which the bot never uses, from the binary.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -tags nomsgpack -trimpath -ldflags "-s -w" -o /out/upgradebot .

# Run: distroless, no shell, CA certificates included, as a non-root user.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/upgradebot /upgradebot
USER nonroot:nonroot
ENV PORT=3978
EXPOSE 3978
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["/upgradebot", "healthcheck"]
ENTRYPOINT ["/upgradebot"]
CMD ["serve"]
