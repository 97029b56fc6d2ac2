// Package version says which treaty a binary is: the version stamped at
// build time, or else the module version the Go toolchain recorded (as
// `go install github.com/treatyhq/treaty/cmd/treaty@v1.2.3` does), or
// "dev". The CLI prints it and the server exports it as a metric.
package version

import (
	"cmp"
	"runtime"
	"runtime/debug"
)

// Stamp is the version set at build time with
// -ldflags "-X github.com/treatyhq/treaty/internal/version.Stamp=v1.2.3".
// Empty means "ask the build info".
var Stamp string

// Dev is the version of a binary that carries none: built from a checkout
// without a stamp.
const Dev = "dev"

// Info is what the binary knows about its own build.
type Info struct {
	// Version is Stamp, else the main module's version, else Dev.
	Version string
	// Revision is the VCS revision it was built from, when known.
	Revision string
	// GoVersion is the Go toolchain that built it.
	GoVersion string
}

// String returns the binary's version (Info's Version).
func String() string { return Get().Version }

// Get returns the binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuild(Stamp, bi)
}

// fromBuild picks the version: the stamp, else the module version unless
// it is "(devel)", which the toolchain records for a checkout build.
func fromBuild(stamp string, bi *debug.BuildInfo) Info {
	info := Info{Version: stamp, GoVersion: runtime.Version()}
	if bi == nil {
		info.Version = cmp.Or(info.Version, Dev)
		return info
	}
	info.GoVersion = cmp.Or(bi.GoVersion, info.GoVersion)
	if v := bi.Main.Version; info.Version == "" && v != "" && v != "(devel)" {
		info.Version = v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			info.Revision = s.Value
		}
	}
	info.Version = cmp.Or(info.Version, Dev)
	return info
}
