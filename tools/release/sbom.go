package main

import (
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"net/url"
	"runtime/debug"
	"strings"
	"time"
)

// The SBOM is CycloneDX 1.5 JSON (https://cyclonedx.org/docs/1.5/json/),
// made from the module list the Go linker embeds in the binary: exactly
// what was compiled in, nothing a go.mod lists but the build left out.

type cdxBOM struct {
	BOMFormat   string         `json:"bomFormat"`
	SpecVersion string         `json:"specVersion"`
	Version     int            `json:"version"`
	Metadata    cdxMetadata    `json:"metadata"`
	Components  []cdxComponent `json:"components"`
}

type cdxMetadata struct {
	Timestamp string       `json:"timestamp"`
	Component cdxComponent `json:"component"`
}

type cdxComponent struct {
	Type       string        `json:"type"`
	BOMRef     string        `json:"bom-ref"`
	Name       string        `json:"name"`
	Version    string        `json:"version"`
	PURL       string        `json:"purl"`
	Properties []cdxProperty `json:"properties,omitempty"`
}

type cdxProperty struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// SBOM reads the build information of the Go binary at path and returns
// its CycloneDX SBOM, stamped with the given time.
func SBOM(path, version string, stamp time.Time) ([]byte, error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read build info of %s: %w", path, err)
	}
	main := component("application", bi.Main.Path, version)
	for _, s := range bi.Settings {
		switch s.Key {
		case "GOOS", "GOARCH", "vcs.revision", "vcs.time", "CGO_ENABLED", "-trimpath":
			main.Properties = append(main.Properties, cdxProperty{"go:build:" + s.Key, s.Value})
		}
	}
	bom := cdxBOM{BOMFormat: "CycloneDX", SpecVersion: "1.5", Version: 1,
		Metadata: cdxMetadata{Timestamp: stamp.UTC().Format(time.RFC3339), Component: main}}
	bom.Components = append(bom.Components, component("library", "stdlib", bi.GoVersion))
	for _, m := range bi.Deps {
		bom.Components = append(bom.Components, module(m))
	}
	b, err := json.MarshalIndent(bom, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// module is a dependency's component; a replaced module is listed as what
// was compiled in, its replacement.
func module(m *debug.Module) cdxComponent {
	var props []cdxProperty
	if m.Replace != nil {
		props = append(props, cdxProperty{"go:module:replaces", m.Path + "@" + m.Version})
		m = m.Replace
	}
	c := component("library", m.Path, m.Version)
	if m.Sum != "" {
		props = append(props, cdxProperty{"go:module:sum", m.Sum})
	}
	c.Properties = props
	return c
}

func component(typ, path, version string) cdxComponent {
	// purl versions percent-encode "+" (as in +incompatible).
	purl := "pkg:golang/" + path + "@" + strings.ReplaceAll(url.PathEscape(version), "+", "%2B")
	if path != "stdlib" {
		purl += "?type=module"
	}
	return cdxComponent{Type: typ, BOMRef: purl, Name: path, Version: version, PURL: purl}
}
