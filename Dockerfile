# The krm-agent image: the statically linked agent on an empty base, with a
# CA bundle and a non-root user. `make image` builds the same image without
# Docker (internal/image). The agent keeps its default --listen,
# 127.0.0.1:8080, which a port-forward reaches: pass --listen=:8080 to serve
# the pod network.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t krm-project/krm-agent:dev .

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
        -ldflags "-s -w -X github.com/krm-project/krm/pkg/version.Version=${VERSION}" \
        -o /out/krm-agent ./cmd/krm-agent
# uid and gid 65532 are named nonroot, so tools that look them up work.
RUN mkdir -p /out/etc /out/home/nonroot && chmod 0700 /out/home/nonroot && \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/out/etc/passwd && \
    printf 'root:x:0:\nnonroot:x:65532:\n' >/out/etc/group

FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="krm-agent" \
      org.opencontainers.image.description="krm's agent: caches a cluster's resources and serves them over krm's HTTP API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/etc/passwd /out/etc/group /etc/
COPY --from=build --chown=65532:65532 /out/home/ /home/
COPY --from=build /out/krm-agent /krm-agent
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
WORKDIR /
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/krm-agent"]
