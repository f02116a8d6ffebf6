package keywrap_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/cvault/cvault/internal/jwk"
	"github.com/cvault/cvault/internal/keywrap"
)

func TestKeyHSMRoundTrip(t *testing.T) {
	t.Parallel()
	priv := mustReleaseKey(t)
	material := bytes.Repeat([]byte{9}, 32)
	ct, err := keywrap.RSAAESWrap(rand.Reader, &priv.PublicKey, keywrap.EncRSAAESKeyWrap256, material)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := keywrap.BuildKeyHSM("TpmEphemeralEncryptionKey", keywrap.EncRSAAESKeyWrap256, ct)
	if err != nil {
		t.Fatal(err)
	}
	// The exact shape of wire §2.4, member order included.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(blob, &raw); err != nil {
		t.Fatal(err)
	}
	if got := string(raw["header"]); got != `{"kid":"TpmEphemeralEncryptionKey","alg":"dir","enc":"RSA_AES_KEY_WRAP_256"}` {
		t.Errorf("header = %s", got)
	}
	if got := string(raw["schema_version"]); got != `"1.0"` {
		t.Errorf("schema_version = %s", got)
	}
	if bytes.ContainsAny(raw["ciphertext"], "=+/") {
		t.Errorf("ciphertext not unpadded base64url: %s", raw["ciphertext"])
	}

	// Through the JWK as the release JWS carries it, then the guest's side.
	j := &jwk.Key{KeyType: jwk.KeyTypeOctHSM, KeyHSM: blob}
	wire, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	back, err := jwk.ParseKey(wire)
	if err != nil {
		t.Fatal(err)
	}
	k, err := keywrap.ParseKeyHSM(back.KeyHSM)
	if err != nil {
		t.Fatal(err)
	}
	got, err := keywrap.RSAAESUnwrap(priv, k.Header.Enc, k.Ciphertext)
	if err != nil || !bytes.Equal(got, material) {
		t.Errorf("guest unwrap: %v", err)
	}
}

func TestBuildKeyHSMRejects(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		kid, enc string
		ct       []byte
		want     error
	}{
		{"k", "A256KW", []byte{1}, keywrap.ErrUnsupportedEnc},
		{"", keywrap.EncDefault, []byte{1}, keywrap.ErrKeyHSM},
		{"k", keywrap.EncDefault, nil, keywrap.ErrKeyHSM},
	} {
		if b, err := keywrap.BuildKeyHSM(tt.kid, tt.enc, tt.ct); !errors.Is(err, tt.want) || b != nil {
			t.Errorf("BuildKeyHSM(%q, %q) = %s, %v", tt.kid, tt.enc, b, err)
		}
	}
}

func TestParseKeyHSMRejects(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"schema_version":"2.0","header":{"kid":"k","alg":"dir","enc":"CKM_RSA_AES_KEY_WRAP"},"ciphertext":"AQ"}`,
		`{"schema_version":"1.0","header":{"kid":"k","alg":"RSA-OAEP","enc":"CKM_RSA_AES_KEY_WRAP"},"ciphertext":"AQ"}`,
		`{"schema_version":"1.0","header":{"kid":"k","alg":"dir","enc":"A256GCM"},"ciphertext":"AQ"}`,
		`{"schema_version":"1.0","header":{"alg":"dir","enc":"CKM_RSA_AES_KEY_WRAP"},"ciphertext":"AQ"}`,
		`{"schema_version":"1.0","header":{"kid":"k","alg":"dir","enc":"CKM_RSA_AES_KEY_WRAP"}}`,
		`{"schema_version":"1.0","header":{"kid":"k","alg":"dir","enc":"CKM_RSA_AES_KEY_WRAP"},"ciphertext":"*"}`,
		`{}`, `null`, `[`, ``,
	} {
		if k, err := keywrap.ParseKeyHSM([]byte(in)); err == nil || k != nil {
			t.Errorf("ParseKeyHSM(%s) = %+v, %v", in, k, err)
		}
	}
	// Standard padded base64 ciphertext is accepted (lenient input).
	k, err := keywrap.ParseKeyHSM([]byte(`{"schema_version":"1.0","header":{"kid":"k","alg":"dir","enc":"RSA_AES_KEY_WRAP_384"},"ciphertext":"+/8="}`))
	if err != nil || !bytes.Equal(k.Ciphertext, []byte{0xfb, 0xff}) {
		t.Errorf("padded std ciphertext: %v", err)
	}
}

// FuzzParseKeyHSM: never panics, nil with an error, and a parsed blob
// rebuilds to one that parses to the same value.
func FuzzParseKeyHSM(f *testing.F) {
	seed, _ := keywrap.BuildKeyHSM("fake-release-key", keywrap.EncCKMRSAAESKeyWrap, bytes.Repeat([]byte{0xfe}, 300))
	f.Add(seed)
	f.Add([]byte(`{"schema_version":"1.0","header":{"kid":"a","alg":"dir","enc":"RSA_AES_KEY_WRAP_256"},"ciphertext":"AAAA"}`))
	f.Add([]byte(`{"schema_version":"1.0","header":{"kid":"\u003c","alg":"dir","enc":"RSA_AES_KEY_WRAP_384"},"ciphertext":"AA=="}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := keywrap.ParseKeyHSM(data)
		if err != nil {
			if k != nil {
				t.Fatal("non-nil result with error")
			}
			return
		}
		b, err := keywrap.BuildKeyHSM(k.Header.KID, k.Header.Enc, k.Ciphertext)
		if err != nil {
			t.Fatalf("rebuild: %v", err)
		}
		again, err := keywrap.ParseKeyHSM(b)
		if err != nil || !reflect.DeepEqual(k, again) {
			t.Fatalf("round trip: %+v vs %+v (%v)", k, again, err)
		}
	})
}
