//go:build tools

// Package tools pins the version of golangci-lint used by `make lint` and CI.
// It is a separate module so golangci-lint's dependencies stay out of the
// main go.mod. Bump the version with:
//
//	cd tools/lint && go get github.com/golangci/golangci-lint/v2@vX.Y.Z && go mod tidy
package tools

import (
	_ "github.com/golangci/golangci-lint/v2/cmd/golangci-lint"
)
