# treaty's container image, for those who build with docker or buildah:
#
#   docker build -t treaty --build-arg VERSION=v1.2.3 .
#
# Release images are built without a container engine by `make image`
# (tools/release), which lays out the same file system and start command;
# tools/release's tests hold the two together (user, entrypoint, command,
# volumes). Run it with a read-only root file system: data_dir and the
# sockets live on the two volumes.
#
#   docker run --read-only -v treaty-data:/var/lib/treaty \
#     -v "$PWD/treaty.yaml:/etc/treaty/treaty.yaml:ro" -p 8443:8443 treaty

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# A static binary without paths or build ID: the same bytes as `make release`
# gives for the same commit, version and Go.
RUN CGO_ENABLED=0 go build -trimpath \
    -ldflags="-s -w -buildid= -X github.com/treatyhq/treaty/internal/version.Stamp=${VERSION}" \
    -o /out/treaty ./cmd/treaty
# The volumes' mount points, owned by the user the server runs as, so that
# fresh volumes start out writable by it.
RUN install -d -m 0700 /out/data /out/run

# distroless/static: CA roots, /etc/passwd with the nonroot user (65532),
# no shell and no libc.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/treaty /usr/local/bin/treaty
COPY --from=build --chown=65532:65532 /out/data /var/lib/treaty
COPY --from=build --chown=65532:65532 /out/run /run/treaty
USER 65532:65532
WORKDIR /var/lib/treaty
VOLUME ["/var/lib/treaty", "/run/treaty"]
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/treaty"]
CMD ["server", "run", "-config", "/etc/treaty/treaty.yaml"]
