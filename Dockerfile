# syntax=docker/dockerfile:1
#
# Images of the webhook and of the token-server sidecar, one target each:
#
#   docker build --target webhook -t <registry>/pod-identity-webhook:<tag> .
#   docker build --target sidecar -t <registry>/pod-identity-sidecar:<tag> .
#
# Static binaries (CGO_ENABLED=0) on distroless static, as user 65532.
# Untested here: Docker does not run on the project's build machines. The
# binaries themselves are built and tested by `make build` and `make test`.

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH

FROM build AS build-webhook
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w" -o /out/pod-identity-webhook ./cmd/webhook

FROM build AS build-sidecar
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w" -o /out/pod-identity-sidecar ./cmd/sidecar

# The injected token server. The webhook names /pod-identity-sidecar as the
# container's command, so the path is part of the contract
# (internal/names.SidecarBinary).
FROM gcr.io/distroless/static-debian12:nonroot AS sidecar
COPY --from=build-sidecar /out/pod-identity-sidecar /pod-identity-sidecar
USER 65532:65532
ENTRYPOINT ["/pod-identity-sidecar"]

# The admission webhook; manifests/deployment.yaml passes its flags.
FROM gcr.io/distroless/static-debian12:nonroot AS webhook
COPY --from=build-webhook /out/pod-identity-webhook /pod-identity-webhook
USER 65532:65532
ENTRYPOINT ["/pod-identity-webhook"]
