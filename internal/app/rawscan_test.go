package app_test

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"testing"

	"github.com/cvault/cvault/internal/cvaulttest"
	"github.com/cvault/cvault/internal/store/storetest"
)

// TestNoPrivateKeyInClear scans the raw bytes of both stores for the CA's
// private key (PKCS#8 and the bare scalar): it must only be stored sealed.
// Later services add their secrets to this scan.
func TestNoPrivateKeyInClear(t *testing.T) {
	for name, opts := range map[string][]cvaulttest.Option{
		"embedded": nil,
		"postgres": {cvaulttest.WithPostgres(t)},
	} {
		t.Run(name, func(t *testing.T) {
			srv, _ := start(t, opts...)
			key := srv.App.CA.Key.(*ecdsa.PrivateKey)
			p8, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				t.Fatal(err)
			}
			d, err := key.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			for what, secret := range map[string][]byte{"PKCS#8": p8, "scalar": d} {
				for _, form := range encodings(secret) {
					found, err := storetest.RawScan(t.Context(), srv.App.Store, form)
					if err != nil {
						t.Fatal(err)
					}
					if found {
						t.Errorf("the CA private key (%s) is in the store in clear: %q…", what, form[:8])
					}
				}
			}
			// The scan itself works: the CA certificate is stored in clear (as base64 in JSON).
			if found, _ := storetest.RawScan(t.Context(), srv.App.Store, encodings(srv.App.CA.Cert.Raw[:48])[1]); !found {
				t.Error("RawScan did not find the CA certificate; the scan proves nothing")
			}
		})
	}
}

// encodings are the forms a secret could take in a JSON record: raw bytes,
// standard and URL base64 (a secret's prefix, so alignment does not hide
// it), and hex.
func encodings(secret []byte) [][]byte {
	head := secret[:len(secret)/3*3]
	return [][]byte{secret, []byte(base64.StdEncoding.EncodeToString(head)),
		[]byte(base64.RawURLEncoding.EncodeToString(head)), []byte(hex.EncodeToString(secret))}
}
