//go:build tools

// Package tools pins the spire-controller-manager release that treaty's
// interop tests run against. It is a separate module so its dependencies
// (controller-runtime, client-go, SPIRE's API SDK) stay out of the main
// go.mod. Build the binary with tools/scm/build.sh; bump the version with:
//
//	cd tools/scm && go get github.com/spiffe/spire-controller-manager@vX.Y.Z && go mod tidy
package tools

import (
	_ "github.com/spiffe/spire-controller-manager/cmd"
)
