package finding

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWorst(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []Severity
		want Severity
	}{
		{"ok/none", nil, Pass},
		{"ok/all pass", []Severity{Pass, Pass}, Pass},
		{"ok/skips do not count", []Severity{Pass, Skip}, Pass},
		{"warn/one warning", []Severity{Pass, Warn, Skip}, Warn},
		{"fail/failure beats warning", []Severity{Warn, Fail, Pass}, Fail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fs []Finding
			for _, s := range tc.in {
				fs = append(fs, Finding{Severity: s})
			}
			require.Equal(t, tc.want, Worst(fs))
		})
	}
}

func TestDiagnostic(t *testing.T) {
	for s, want := range map[Severity]string{Fail: "error", Warn: "warning", Pass: "note", Skip: "note"} {
		t.Run("ok/"+string(s), func(t *testing.T) {
			require.Equal(t, want, s.Diagnostic())
		})
	}
}

func TestString(t *testing.T) {
	require.Equal(t, "fail ca: not a CA", Finding{Check: "ca", Severity: Fail, Message: "not a CA", Fix: "x"}.String())
	require.Equal(t, "warn: odd", Finding{Severity: Warn, Message: "odd"}.String())
}

// TestJSON pins the field names `-output json` users read.
func TestJSON(t *testing.T) {
	out, err := json.Marshal([]Finding{
		{Check: "rotation", Severity: Fail, Message: "too short", Fix: "lengthen it", Doc: "docs/doctor.md#rotation"},
		{Check: "x5c", Severity: Pass, Message: "fine"},
	})
	require.NoError(t, err)
	require.JSONEq(t, `[
		{"check": "rotation", "severity": "fail", "message": "too short", "fix": "lengthen it", "doc": "docs/doctor.md#rotation"},
		{"check": "x5c", "severity": "pass", "message": "fine"}
	]`, string(out))
}
