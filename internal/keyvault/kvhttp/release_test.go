package kvhttp_test

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cvault/cvault/internal/app"
	"github.com/cvault/cvault/internal/cvaulttest"
	"github.com/cvault/cvault/internal/guest/evidence"
	"github.com/cvault/cvault/internal/guest/skr"
	"github.com/cvault/cvault/internal/release/policy"
	"github.com/cvault/cvault/internal/sim"
)

var (
	simPlatform = sync.OnceValues(func() (*sim.Platform, error) { return sim.New(sim.Config{}) })
	// transferPrivate is the guest's RSA-2048 transfer key, generated once;
	// the test keeps its private half for the independent unwrap.
	transferPrivate = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })
	transferKey     = sync.OnceValues(func() (*skr.EphemeralKey, error) {
		k, err := transferPrivate()
		if err != nil {
			return nil, err
		}
		return skr.NewEphemeralKeyFrom(k)
	})
)

// withSim trusts the simulated SEV-SNP platform's root, as `serve --trust-sim-root` does.
func withSim(t testing.TB) cvaulttest.Option {
	p, err := simPlatform()
	if err != nil {
		t.Fatal(err)
	}
	return cvaulttest.WithConfig(func(c *app.Config) { c.SimulatedRootsPEM = p.RootPEM() })
}

func ephemeral(t testing.TB) *skr.EphemeralKey {
	t.Helper()
	k, err := transferKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// attest gets a token from the server's default instance for simulated evidence with o.
func attest(t testing.TB, srv *cvaulttest.Server, o sim.Options) string {
	t.Helper()
	p, _ := simPlatform()
	tok, err := ephemeral(t).Attest(t.Context(), srv.HTTPClient, srv.App.Attestation.Issuer("default"),
		&evidence.Simulated{Platform: p, Options: o}, "")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func exportableKey(t testing.TB, c *azkeys.Client, name string, pol []byte, tags map[string]*string) *azkeys.JSONWebKey {
	t.Helper()
	res, err := c.CreateKey(t.Context(), name, azkeys.CreateKeyParameters{
		Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeySize: to.Ptr[int32](2048), Tags: tags,
		KeyAttributes: &azkeys.KeyAttributes{Exportable: to.Ptr(true)},
		ReleasePolicy: &azkeys.KeyReleasePolicy{EncodedPolicy: pol, Immutable: to.Ptr(false)},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.Key
}

// testAzkeysRelease releases a key with the official SDK and checks the JWS
// and key_hsm with code written here from the specs (RS256 with x5c[0], the
// x5c chain, RSA-OAEP + RFC 5649), not with cvault's keywrap or guest code.
func testAzkeysRelease(t *testing.T, e *env, c *azkeys.Client) {
	ctx := t.Context()
	pub := exportableKey(t, c, "skr-key", policy.CVMDefault(e.srv.App.Attestation.Issuer("default")), nil)
	target := attest(t, e.srv, sim.Options{})
	for _, enc := range []azkeys.KeyEncryptionAlgorithm{azkeys.KeyEncryptionAlgorithmCKMRSAAESKEYWRAP,
		azkeys.KeyEncryptionAlgorithmRSAAESKEYWRAP256, azkeys.KeyEncryptionAlgorithmRSAAESKEYWRAP384} {
		t.Run(string(enc), func(t *testing.T) {
			res, err := c.Release(ctx, "skr-key", "", azkeys.ReleaseParameters{TargetAttestationToken: &target,
				Algorithm: to.Ptr(enc), Nonce: to.Ptr("ADE0101")}, nil)
			if err != nil {
				t.Fatal(err)
			}
			host := strings.TrimPrefix(e.srv.VaultURL("seed-kv"), "https://")
			header, payload := verifyJWS(t, *res.Value, e.srv.CAPool, host)
			if header["alg"] != "RS256" || header["typ"] != "JWT" || header["x5t#S256"] == nil || header["kid"] == nil {
				t.Errorf("JWS header %v", header)
			}
			var body struct {
				Request  map[string]string `json:"request"`
				Response struct {
					Key struct {
						Key struct {
							KID    string `json:"kid"`
							KTY    string `json:"kty"`
							N      string `json:"n"`
							KeyHSM string `json:"key_hsm"`
						} `json:"key"`
						Attributes    map[string]any `json:"attributes"`
						ReleasePolicy map[string]any `json:"release_policy"`
					} `json:"key"`
				} `json:"response"`
			}
			if err := json.Unmarshal(payload, &body); err != nil {
				t.Fatal(err)
			}
			if body.Request["enc"] != string(enc) || body.Request["nonce"] != "ADE0101" || body.Request["api-version"] == "" ||
				body.Request["kid"] != e.srv.VaultURL("seed-kv")+"/keys/skr-key" {
				t.Errorf("request echo %v", body.Request)
			}
			k := body.Response.Key.Key
			if k.KID != string(*pub.KID) || k.KTY != "RSA-HSM" || body.Response.Key.Attributes["exportable"] != true || body.Response.Key.ReleasePolicy["data"] == nil {
				t.Errorf("released bundle %+v", body.Response.Key)
			}
			material := independentUnwrap(t, k.KeyHSM, string(enc))
			priv, err := x509.ParsePKCS8PrivateKey(material)
			if err != nil {
				t.Fatalf("released key is not PKCS#8: %v", err)
			}
			rk, ok := priv.(*rsa.PrivateKey)
			if !ok || !bytes.Equal(rk.N.Bytes(), pub.N) {
				t.Fatal("released private key does not match the key's public part")
			}
		})
	}
	mark("Release")
}

// verifyJWS checks a compact JWS as the sidecar does: x5c[0] chains to roots
// for host, and its key verifies the RS256 signature. It returns the header and payload.
func verifyJWS(t *testing.T, jws string, roots *x509.CertPool, host string) (map[string]any, []byte) {
	t.Helper()
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		t.Fatalf("JWS has %d parts", len(parts))
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	pb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	var header map[string]any
	if err := json.Unmarshal(hb, &header); err != nil {
		t.Fatal(err)
	}
	x5c, _ := header["x5c"].([]any)
	if len(x5c) != 2 {
		t.Fatalf("x5c has %d certificates, want leaf and CA", len(x5c))
	}
	var certs []*x509.Certificate
	for _, c := range x5c {
		der, err := base64.StdEncoding.DecodeString(c.(string))
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, cert)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{DNSName: strings.Split(host, ":")[0], Roots: roots,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("x5c chain: %v", err)
	}
	pub, ok := certs[0].PublicKey.(*rsa.PublicKey)
	if !ok {
		t.Fatal("x5c[0] is not RSA")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		t.Fatalf("JWS signature: %v", err)
	}
	return header, pb
}

// independentUnwrap opens key_hsm with the transfer key: RSA-OAEP (hash by
// enc, empty label) of the AES key in the first 256 bytes, then RFC 5649.
func independentUnwrap(t *testing.T, keyHSM, enc string) []byte {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(keyHSM)
	if err != nil {
		t.Fatal(err)
	}
	var blob struct {
		SchemaVersion string `json:"schema_version"`
		Header        struct{ KID, Alg, Enc string }
		Ciphertext    string `json:"ciphertext"`
	}
	if err := json.Unmarshal(raw, &blob); err != nil {
		t.Fatal(err)
	}
	tk := ephemeral(t)
	if blob.SchemaVersion != "1.0" || blob.Header.Alg != "dir" || blob.Header.Enc != enc || blob.Header.KID != tk.KID() {
		t.Fatalf("key_hsm header %+v", blob)
	}
	ct, err := base64.RawURLEncoding.DecodeString(blob.Ciphertext)
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]crypto.Hash{"CKM_RSA_AES_KEY_WRAP": crypto.SHA1, "RSA_AES_KEY_WRAP_256": crypto.SHA256, "RSA_AES_KEY_WRAP_384": crypto.SHA384}[enc]
	k, _ := transferPrivate()
	kek, err := rsa.DecryptOAEP(h.New(), nil, k, ct[:256], nil)
	if err != nil {
		t.Fatalf("RSA-OAEP: %v", err)
	}
	if len(kek) != 32 {
		t.Fatalf("transport key is %d bytes, want 32", len(kek))
	}
	m, err := unwrapRFC5649(kek, ct[256:])
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// unwrapRFC5649 is AES key unwrap with padding (RFC 5649 §4.2), from the RFC.
func unwrapRFC5649(kek, c []byte) ([]byte, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	if len(c)%8 != 0 || len(c) < 16 {
		return nil, fmt.Errorf("ciphertext length %d", len(c))
	}
	n := len(c)/8 - 1
	var a [8]byte
	p := make([]byte, n*8)
	if n == 1 {
		var out [16]byte
		b.Decrypt(out[:], c)
		copy(a[:], out[:8])
		copy(p, out[8:])
	} else {
		copy(a[:], c[:8])
		copy(p, c[8:])
		var buf [16]byte
		for j := 5; j >= 0; j-- {
			for i := n; i >= 1; i-- {
				tt := uint64(n*j + i)
				binary.BigEndian.PutUint64(buf[:8], binary.BigEndian.Uint64(a[:])^tt)
				copy(buf[8:], p[(i-1)*8:i*8])
				b.Decrypt(buf[:], buf[:])
				copy(a[:], buf[:8])
				copy(p[(i-1)*8:i*8], buf[8:])
			}
		}
	}
	if !bytes.Equal(a[:4], []byte{0xa6, 0x59, 0x59, 0xa6}) {
		return nil, errors.New("RFC 5649: integrity check failed")
	}
	mli := int(binary.BigEndian.Uint32(a[4:]))
	if mli > len(p) || mli <= len(p)-8 {
		return nil, errors.New("RFC 5649: bad message length")
	}
	for _, z := range p[mli:] {
		if z != 0 {
			return nil, errors.New("RFC 5649: non-zero padding")
		}
	}
	return p[:mli], nil
}
