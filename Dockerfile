# syntax=docker/dockerfile:1
#
# mailrelay: a static binary on distroless, running as the nonroot user.
#
#   docker build -t mailrelay .
#   docker run --rm mailrelay config        # print every setting
#
# The image has no shell and no `sleep`: the Helm chart drains with the
# Kubernetes lifecycle sleep action (k8s >= 1.30), not an exec hook.

FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so source edits reuse the module download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w" -o /out/mailrelay ./cmd/mailrelay

FROM gcr.io/distroless/static-debian12:nonroot
# CA certificates (S3, SES, STS, SNS certificate downloads) and tzdata come with the base image.
COPY --from=build /out/mailrelay /mailrelay
USER 65532:65532
# 8080 inbound (POST /sns), 8081 health (/livez, /readyz, /metrics). The admin
# API (8082) listens on loopback only and is reached with `kubectl exec`.
EXPOSE 8080 8081
ENTRYPOINT ["/mailrelay"]
CMD ["serve"]
