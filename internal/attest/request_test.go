package attest_test

import (
	"encoding/json"
	"testing"

	"github.com/cvault/cvault/internal/attest"
)

func TestParseNonce(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{``, ""}, {`null`, ""}, {`"abc"`, "abc"}, {`12345678901234567890`, "12345678901234567890"}, {` 7 `, "7"}, {`1e3`, "1e3"},
	} {
		got, err := attest.ParseNonce(json.RawMessage(tt.in))
		if err != nil || got != tt.want {
			t.Errorf("ParseNonce(%s) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{`{}`, `[1]`, `true`} {
		if _, err := attest.ParseNonce(json.RawMessage(in)); err == nil {
			t.Errorf("ParseNonce(%s) accepted", in)
		}
	}
}

func TestDecodeBase64(t *testing.T) {
	for _, in := range []string{"-_8", "-_8=", "+/8=", "+/8", " -_\n8 "} {
		b, err := attest.DecodeBase64(in)
		if err != nil || len(b) != 2 || b[0] != 0xfb || b[1] != 0xff {
			t.Errorf("DecodeBase64(%q) = %x, %v", in, b, err)
		}
	}
}

func TestParseData(t *testing.T) {
	d, err := attest.ParseData(attest.MarshalData([]byte(`{"a":1}`)))
	if err != nil || !d.JSON || string(d.Bytes) != `{"a":1}` {
		t.Fatalf("JSON round trip: %+v, %v", d, err)
	}
	d, err = attest.ParseData(attest.MarshalData([]byte{0, 1}))
	if err != nil || d.JSON {
		t.Fatalf("binary round trip: %+v, %v", d, err)
	}
	if d, err := attest.ParseData(&attest.DataJSON{}); d != nil || err != nil {
		t.Errorf("empty data = %v, %v; want absent", d, err)
	}
	v, ok := attest.JSONValue(&attest.Data{Bytes: []byte(`{"n":18446744073709551615}`), JSON: true})
	if !ok || v.(map[string]any)["n"].(json.Number) != "18446744073709551615" {
		t.Errorf("JSONValue lost precision: %v", v)
	}
}

func TestPolicyHash(t *testing.T) {
	// BASE64URL(SHA256(UTF8(BASE64URL(UTF8(""))))) = BASE64URL(SHA256("")).
	if got := attest.PolicyHash(""); got != "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU" {
		t.Errorf("PolicyHash(\"\") = %s", got)
	}
}
