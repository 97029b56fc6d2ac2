package bundle

import "testing"

func BenchmarkMarshal(b *testing.B) {
	bundle := sampleBundle(b)
	for b.Loop() {
		if _, err := Marshal(bundle); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	doc, err := Marshal(sampleBundle(b))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, err := Parse(td, doc, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
