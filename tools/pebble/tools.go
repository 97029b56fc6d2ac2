//go:build tools

// Package tools pins the Pebble release (pebble, pebble-challtestsrv) that
// treaty's ACME tests run against. It is a separate module so Pebble's
// dependencies stay out of the main go.mod. Build the binaries with
// tools/pebble/build.sh; bump the version with:
//
//	cd tools/pebble && go get github.com/letsencrypt/pebble/v2@vX.Y.Z && go mod tidy
package tools

import (
	_ "github.com/letsencrypt/pebble/v2/cmd/pebble"
	_ "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv"
)
