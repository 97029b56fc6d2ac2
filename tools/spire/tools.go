//go:build tools

// Package tools pins the SPIRE release (spire-server, spire-agent) that
// treaty's interop tests run against. It is a separate module so SPIRE's
// dependencies stay out of the main go.mod. Build the binaries with
// tools/spire/build.sh; bump the version with:
//
//	cd tools/spire && go get github.com/spiffe/spire@vX.Y.Z && go mod tidy
//
// and update the version in build.sh.
package tools

import (
	_ "github.com/spiffe/spire/cmd/spire-agent"
	_ "github.com/spiffe/spire/cmd/spire-server"
)
