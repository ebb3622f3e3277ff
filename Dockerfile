# Outrider sidecar image: a static binary on a distroless base, running as
# a non-root user. Build: docker build -t outrider --build-arg VERSION=$(git describe --always) .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/outrider ./cmd/outrider

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/outrider /usr/local/bin/outrider
USER nonroot:nonroot
# Admin endpoints (/ready, /config_dump); bind them with -admin-bind 0.0.0.0:19000
# to reach them from outside the container.
EXPOSE 19000
# Healthy once the sidecar serves (listeners up, certificates and intentions
# loaded): the binary checks its own /ready, no shell needed.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD ["/usr/local/bin/outrider", "wait", "-timeout", "0", "-quiet"]
ENTRYPOINT ["/usr/local/bin/outrider"]
CMD ["run"]
