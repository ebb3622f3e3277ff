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
ENTRYPOINT ["/usr/local/bin/outrider"]
CMD ["run"]
