package main

import (
	"bytes"
	"testing"
	"time"
)

func TestParsePlatforms(t *testing.T) {
	tests := []struct {
		name, in string
		want     []Platform
		fail     bool
	}{
		{"ok/all", "all", AllPlatforms, false},
		{"ok/list", "linux/amd64, darwin/arm64", []Platform{{"linux", "amd64"}, {"darwin", "arm64"}}, false},
		{"fail/no arch", "linux", nil, true},
		{"fail/empty os", "/amd64", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePlatforms(tt.in)
			if (err != nil) != tt.fail {
				t.Fatalf("err %v, want failure %v", err, tt.fail)
			}
			if !tt.fail && !equalPlatforms(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func equalPlatforms(a, b []Platform) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestTarGzOrder: the same entries in any order give the same bytes.
func TestTarGzOrder(t *testing.T) {
	mtime := time.Unix(1700000000, 0)
	a := []entry{{Name: "d", Mode: 0o755, Dir: true}, {Name: "d/x", Mode: 0o644, Body: []byte("x")}, {Name: "d/y", Mode: 0o600, UID: 7, Body: []byte("y")}}
	b := []entry{a[2], a[0], a[1]}
	x, err := tarGz(a, mtime)
	if err != nil {
		t.Fatal(err)
	}
	y, err := tarGz(b, mtime)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Error("tarGz depends on the order of its entries")
	}
}
