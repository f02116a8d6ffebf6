package kvhttp

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"testing"

	"github.com/cvault/cvault/internal/azure"
)

var opBodySeeds = []string{
	`{"alg":"A256KW","value":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"}`,
	` { "alg" : "RSA-OAEP-256" , "value" : "AQID" , "extra":"x" } `,
	`{"alg":"A256GCM","value":"AQID","iv":"AAAAAAAAAAAAAAAA","aad":"AQ==","tag":"AQID"}`,
	`{"alg":"ES256","value":"AQID","digest":"AQID"}`,
	`{"alg":"RS256","value":"AQID","value":"BAU"}`,
	`{}`,
	`{"ALG":"RS256","value":"AQID"}`,
	`{"alg":"RS256","value":"not base64!"}`,
	`{"alg":"RS256","value":null}`,
	`{"alg":"RS256","value":"AQID",}`,
	`{"alg":"RS\u0032","value":"AQID"}`,
	`{"alg":"RS256","value":"AQID"} x`,
	`{"alg":"RS256","value":"AQID"`,
	`{"alg":1}`,
	`{"alg":"RS256","n":{"a":1}}`,
	``,
	`[]`,
}

// TestScanOpAgreesWithDecoder checks the fast path on the seeds: whatever
// scanOp accepts, encoding/json decodes to the same value.
func TestScanOpAgreesWithDecoder(t *testing.T) {
	accepted := 0
	for _, s := range opBodySeeds {
		if checkScanOp(t, []byte(s)) {
			accepted++
		}
	}
	if accepted < 5 {
		t.Errorf("scanOp accepted %d seeds, want the 5 plain ones at least", accepted)
	}
}

func checkScanOp(t *testing.T, raw []byte) bool {
	t.Helper()
	var fast opBody
	if !scanOp(raw, &fast) {
		return false
	}
	var full opBody
	if err := azure.UnmarshalJSON(raw, azure.CodeBadParameter, false, &full); err != nil {
		t.Fatalf("scanOp accepted %q, the decoder refuses it: %v", raw, err)
	}
	if !reflect.DeepEqual(fast, full) {
		f, _ := json.Marshal(fast)
		g, _ := json.Marshal(full)
		t.Fatalf("scanOp(%q) = %s, decoder = %s", raw, f, g)
	}
	return true
}

func FuzzScanOp(f *testing.F) {
	for _, s := range opBodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkScanOp(t, raw) })
}

// BenchmarkDecodeOp compares the full decoder with decodeOp on a wrapKey
// body as azkeys sends it (body read included in both).
func BenchmarkDecodeOp(b *testing.B) {
	body := []byte(opBodySeeds[0])
	for _, c := range []struct {
		name string
		dec  func(*http.Request, *opBody) error
	}{
		{"encoding-json", func(r *http.Request, v *opBody) error { return decode(r, v) }},
		{"decodeOp", decodeOp},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := &http.Request{Body: io.NopCloser(bytes.NewReader(body))}
				var v opBody
				if err := c.dec(r, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestOpResultJSON(t *testing.T) {
	kid := "https://v.vault.localhost:8443/keys/k/0123456789abcdef0123456789abcdef"
	for _, res := range []opResultJSON{
		{KID: kid, Value: []byte{1, 2, 3}},
		{KID: kid, Value: []byte{}, IV: []byte{4}, Tag: []byte{5, 6}, AAD: []byte("aad")},
		{KID: kid},
		{KID: "https://x/keys/<a&b>\"\u00e9\n", Value: []byte{0xff}},
	} {
		want, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.appendJSON(nil); string(got) != string(want) {
			t.Errorf("appendJSON = %s, encoding/json = %s", got, want)
		}
	}
}

func BenchmarkOpResult(b *testing.B) {
	res := opResultJSON{KID: "https://bench-kv.vault.localhost:8443/keys/oct/0123456789abcdef0123456789abcdef", Value: make([]byte, 40)}
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(res)
		}
	})
	b.Run("appendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = res.appendJSON(make([]byte, 0, 200))
		}
	})
}
