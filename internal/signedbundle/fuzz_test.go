package signedbundle_test

import (
	"testing"

	"github.com/treatyhq/treaty/internal/signedbundle"
)

// FuzzParse feeds Parse and Accept arbitrary files: neither may panic, and
// nothing but a file signed by the held bundle's key is accepted.
func FuzzParse(f *testing.F) {
	a := newKey(f, "a")
	held, _ := publish(f, 1, []signedbundle.Key{a})
	_, file := publish(f, 2, []signedbundle.Key{a}, a)
	f.Add(file)
	f.Add([]byte(`{"spiffe_bundle":{"keys":[],"spiffe_sequence":2},"signatures":[{"protected":"e30","signature":""}]}`))
	f.Add([]byte(`eyJhbGciOiJFUzI1NiJ9.e30.sig`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := signedbundle.Parse(data)
		if err != nil {
			return
		}
		if _, _, err := s.Accept(held, ""); err == nil && string(data) != string(file) {
			// Only whitespace outside the signed document may differ.
			if s.Bundle == nil || !s.Bundle.Equal(mustParsed(t, file).Bundle) {
				t.Fatalf("accepted a file the held key did not sign: %q", data)
			}
		}
	})
}

func mustParsed(t *testing.T, file []byte) *signedbundle.Signed {
	s, err := signedbundle.Parse(file)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
