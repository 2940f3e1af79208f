# One image for every part of kube-apisnoop: `apisnoop manager`, the injected
# `snoop-proxy` sidecar (the proxy built without the operator, to keep every
# recorded pod's overhead small) and the `apisnoop iptables` init container.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/apisnoop ./cmd/apisnoop && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/snoop-proxy ./cmd/snoop-proxy

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/apisnoop /out/snoop-proxy /
USER 65532:65532
ENTRYPOINT ["/apisnoop"]
