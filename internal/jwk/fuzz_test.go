package jwk_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/cvault/cvault/internal/jwk"
)

var update = flag.Bool("update", false, "rewrite golden files")

// FuzzParseJWK: ParseKey never panics, returns nil with an error, and a
// parsed key re-encodes to a form that parses to the same key. The
// conversions that consume a parsed key must not panic either.
func FuzzParseJWK(f *testing.F) {
	ins, _ := filepath.Glob("testdata/*.json")
	for _, in := range ins {
		if b, err := os.ReadFile(in); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"kty":"EC","crv":"P-256","x":"AA","y":"AA","d":"AQ"}`))
	f.Add([]byte(`{"kty":"oct-HSM","k":"AAAAAAAAAAAAAAAAAAAAAA=="}`))
	f.Add([]byte(`{"kty":"RSA","n":"AQ","e":"AQAB","d":"AQ","p":"Aw","q":"BQ"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := jwk.ParseKey(data)
		if err != nil {
			if k != nil {
				t.Fatal("non-nil key with error")
			}
			return
		}
		out, err := json.Marshal(k)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := jwk.ParseKey(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		if !reflect.DeepEqual(k, again) {
			t.Fatalf("round trip changed the key:\n%+v\n%+v", k, again)
		}
		_, _ = jwk.Thumbprint(k)
		_, _ = k.PublicKey()
		if p, err := jwk.FromJWK(k); err == nil {
			if _, err := p.PublicJWK(); err != nil {
				t.Fatalf("PublicJWK of an imported key: %v", err)
			}
		}
	})
}
