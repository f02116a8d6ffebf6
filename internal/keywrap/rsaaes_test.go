package keywrap_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"sync"
	"testing"

	"github.com/cvault/cvault/internal/keywrap"
)

// One RSA-2048 release key per package run (keygen is slow under -race).
var releaseKey = sync.OnceValues(func() (*rsa.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, 2048)
})

func mustReleaseKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := releaseKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRSAAESWrap(t *testing.T) {
	t.Parallel()
	priv := mustReleaseKey(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(priv)
	materials := map[string][]byte{
		"oct-256":       bytes.Repeat([]byte{0x5a}, 32),
		"oct-128":       bytes.Repeat([]byte{0xa5}, 16),
		"PKCS#8 P-256":  ecDER,
		"PKCS#8 RSA2k":  rsaDER,
		"odd length 13": []byte("thirteen byte"),
	}
	for _, tt := range []struct {
		enc  string
		hash crypto.Hash
	}{
		{keywrap.EncCKMRSAAESKeyWrap, crypto.SHA1},
		{keywrap.EncRSAAESKeyWrap256, crypto.SHA256},
		{keywrap.EncRSAAESKeyWrap384, crypto.SHA384},
	} {
		for name, m := range materials {
			ct, err := keywrap.RSAAESWrap(rand.Reader, &priv.PublicKey, tt.enc, m)
			if err != nil {
				t.Fatalf("%s/%s: %v", tt.enc, name, err)
			}
			if want := 256 + (len(m)+7)/8*8 + 8; len(ct) != want {
				t.Errorf("%s/%s: length %d, want %d", tt.enc, name, len(ct), want)
			}
			// Independently of RSAAESUnwrap: RSA-OAEP with the named hash
			// for both OAEP and MGF1, then an RFC 5649 unwrap.
			kek, err := priv.Decrypt(nil, ct[:256], &rsa.OAEPOptions{Hash: tt.hash, MGFHash: tt.hash})
			if err != nil || len(kek) != 32 {
				t.Fatalf("%s/%s: OAEP part: %d bytes, %v", tt.enc, name, len(kek), err)
			}
			if got, err := keywrap.UnwrapPad(kek, ct[256:]); err != nil || !bytes.Equal(got, m) {
				t.Errorf("%s/%s: KWP part: %v", tt.enc, name, err)
			}
			got, err := keywrap.RSAAESUnwrap(priv, tt.enc, ct)
			if err != nil || !bytes.Equal(got, m) {
				t.Errorf("%s/%s: RSAAESUnwrap: %v", tt.enc, name, err)
			}
		}
	}
}

func TestRSAAESUnwrapRejects(t *testing.T) {
	t.Parallel()
	priv := mustReleaseKey(t)
	m := bytes.Repeat([]byte{1}, 32)
	ct, err := keywrap.RSAAESWrap(rand.Reader, &priv.PublicKey, keywrap.EncRSAAESKeyWrap256, m)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte { b := bytes.Clone(ct); b[i] ^= 1; return b }
	for _, tt := range []struct {
		name, enc string
		ct        []byte
		want      error
	}{
		{"wrong enc", keywrap.EncRSAAESKeyWrap384, ct, keywrap.ErrUnwrap},
		{"SHA-1 for SHA-256", keywrap.EncCKMRSAAESKeyWrap, ct, keywrap.ErrUnwrap},
		{"RSA part tampered", keywrap.EncRSAAESKeyWrap256, flip(10), keywrap.ErrUnwrap},
		{"KWP part tampered", keywrap.EncRSAAESKeyWrap256, flip(260), keywrap.ErrUnwrap},
		{"truncated", keywrap.EncRSAAESKeyWrap256, ct[:256+8], keywrap.ErrInputLength},
		{"unknown enc", "RSA-OAEP", ct, keywrap.ErrUnsupportedEnc},
		{"empty enc", "", ct, keywrap.ErrUnsupportedEnc},
	} {
		if got, err := keywrap.RSAAESUnwrap(priv, tt.enc, tt.ct); !errors.Is(err, tt.want) || got != nil {
			t.Errorf("%s: %x, %v; want %v", tt.name, got, err, tt.want)
		}
	}
	if _, err := keywrap.RSAAESWrap(rand.Reader, &priv.PublicKey, "A256KW", m); !errors.Is(err, keywrap.ErrUnsupportedEnc) {
		t.Errorf("wrap with unknown enc: %v", err)
	}
	if _, err := keywrap.RSAAESWrap(rand.Reader, &priv.PublicKey, keywrap.EncDefault, nil); !errors.Is(err, keywrap.ErrInputLength) {
		t.Errorf("wrap of empty material: %v", err)
	}
}
