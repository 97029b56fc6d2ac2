package config

import (
	"os"
	"testing"
	"time"
)

func FuzzHang(f *testing.F) {
	f.Add([]byte("trust_domain: example.org\nca:\n  ca_ttl: 1h\n  ca_ttl: 2h\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("trust_domain: &t example.org\nca: *t\n<<: {x: 1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		done := make(chan struct{})
		go func() {
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				os.WriteFile("/tmp/hang.yaml", data, 0o600)
				panic("hang")
			}
		}()
		Parse(data, "x")
		close(done)
	})
}
