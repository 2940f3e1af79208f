# kube-apisnoop's images, for machines with Docker (BuildKit):
#
#   docker build --target apisnoop .          # operator, init container, sidecar
#   docker build --target snoop-proxy .       # the sidecar alone
#   docker build --target apisnoop-testkit .  # test workload: kubectl, busybox
#
# `make image` builds the same images without a Docker engine, from the same
# static binaries on an empty base (hack/release; its images.go defines
# their files, user, entrypoint, environment and labels once).
# hack/release/dockerfile_test.go checks the final stages below against it:
# change both together.
ARG GO_VERSION=1.26
ARG KUBE_VERSION=1.37.2

# Our binaries, cross-compiled on the build machine for the target platform.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags "-s -w" -o /out/ ./cmd/apisnoop ./cmd/snoop-proxy

# kubectl, built from the Go module proxy as hack/build-control-plane.sh
# builds the control plane.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS kubectl
ARG KUBE_VERSION TARGETOS TARGETARCH
WORKDIR /src
COPY hack/build-control-plane.sh hack/
RUN GOOS=$TARGETOS GOARCH=$TARGETARCH KUBE_VERSION=$KUBE_VERSION CONTROL_PLANE_DIR=/out hack/build-control-plane.sh kubectl

# A static busybox from Debian, for the testkit's shell.
FROM debian:bookworm-slim AS busybox
RUN apt-get update && apt-get install -y --no-install-recommends busybox-static && rm -rf /var/lib/apt/lists/*

FROM scratch AS snoop-proxy
ARG VERSION=dev REVISION=unknown SOURCE=https://apisnoop.dev/kube-apisnoop
COPY --from=build /out/snoop-proxy /snoop-proxy
USER 65532:65532
ENTRYPOINT ["/snoop-proxy"]
LABEL org.opencontainers.image.title="snoop-proxy" \
      org.opencontainers.image.description="kube-apisnoop's recording proxy alone: a small sidecar image for env-mode sessions (the iptables mode's init container runs /apisnoop from the apisnoop image)" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

FROM scratch AS apisnoop-testkit
ARG VERSION=dev REVISION=unknown SOURCE=https://apisnoop.dev/kube-apisnoop
COPY --from=busybox /bin/busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY --from=kubectl /out/kubectl /bin/kubectl
ENV PATH=/bin
USER 65532:65532
ENTRYPOINT ["/bin/kubectl"]
LABEL org.opencontainers.image.title="apisnoop-testkit" \
      org.opencontainers.image.description="kube-apisnoop's test workload: a static kubectl and a busybox shell" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# Last, so that a plain `docker build .` builds it.
FROM scratch AS apisnoop
ARG VERSION=dev REVISION=unknown SOURCE=https://apisnoop.dev/kube-apisnoop
COPY --from=build /out/apisnoop /apisnoop
COPY --from=build /out/snoop-proxy /snoop-proxy
USER 65532:65532
ENTRYPOINT ["/apisnoop"]
LABEL org.opencontainers.image.title="apisnoop" \
      org.opencontainers.image.description="kube-apisnoop: the operator (apisnoop manager), the redirect init container (apisnoop iptables) and the recording sidecar (/snoop-proxy) that the webhook injects" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
