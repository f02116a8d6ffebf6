package kvhttp_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/cvault/cvault/internal/authz"
	"github.com/cvault/cvault/internal/jwk"
	"github.com/cvault/cvault/internal/keyops"
	"github.com/cvault/cvault/internal/keyvault"
)

// BenchmarkDataPlane measures key operations over HTTPS with real bearer
// tokens (identity's JWT verification and authz's RBAC check on every
// request), next to the raw Go crypto of the same operation and the
// /healthz floor, in one run:
//
//	go test -run '^$' -bench DataPlane -benchtime 2s ./internal/keyvault/kvhttp/
func BenchmarkDataPlane(b *testing.B) {
	srvEnv := newEnv(b)
	ctx := b.Context()
	tok, err := srvEnv.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://" + srvEnv.srv.Config.VaultDomain + ":" + srvEnv.srv.BaseURL.Port() + "/.default"}})
	if err != nil {
		b.Fatal(err)
	}
	kv := srvEnv.srv.App.KeyVault
	v, _, err := kv.PutVault(ctx, keyvault.Vault{Subscription: srvEnv.sub, ResourceGroup: "rg", Name: "bench-kv", Location: "westeurope",
		Properties: keyvault.VaultProperties{TenantID: srvEnv.tenant, SKU: keyvault.SKUPremium, EnableRBACAuthorization: true}}, srvEnv.tenant)
	if err != nil {
		b.Fatal(err)
	}
	srvEnv.grant(b, v.ID(), srvEnv.srv.App.Bootstrap.AdminObjectID, authz.RoleKeyVaultCryptoOfficer)
	mk := func(name, body string) *keyvault.Version {
		r := srvEnv.call(b, "bench-kv", "POST", "/keys/"+name+"/create", tok.Token, body)
		if r.status != 200 {
			b.Fatalf("create %s: %d %s", name, r.status, r.body)
		}
		k, err := kv.Key(ctx, &v, name, "")
		if err != nil {
			b.Fatal(err)
		}
		return k
	}
	oct, rsaK, ec := mk("oct", `{"kty":"oct-HSM","key_size":256}`), mk("rsa", `{"kty":"RSA","key_size":2048}`), mk("ec", `{"kty":"EC","crv":"P-256"}`)
	priv := func(k *keyvault.Version) *jwk.PrivateKey {
		p, err := kv.PrivateKey(k)
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	octP, rsaP, ecP := priv(oct), priv(rsaK), priv(ec)
	dek := bytes.Repeat([]byte{1}, 32)
	digest := sha256.Sum256([]byte("m"))
	rsaWrapped, err := keyops.WrapKey(rand.Reader, rsaP, keyops.RSAOAEP256, dek)
	if err != nil {
		b.Fatal(err)
	}
	body := func(alg string, v []byte) []byte {
		out, _ := json.Marshal(map[string]string{"alg": alg, "value": b64(v)})
		return out
	}
	client := srvEnv.srv.HTTPClient
	vaultURL := srvEnv.srv.VaultURL("bench-kv")
	post := func(b *testing.B, path string, payload []byte) {
		req, _ := http.NewRequest("POST", vaultURL+path+"?api-version=7.5", bytes.NewReader(payload))
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			b.Error(err)
			return
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			b.Errorf("%s: %d", path, res.StatusCode)
		}
	}
	healthz := func(b *testing.B) {
		res, err := client.Get(srvEnv.srv.URL + "/healthz")
		if err != nil {
			b.Error(err)
			return
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	type op struct {
		name string
		http func(b *testing.B)
		raw  func(b *testing.B)
	}
	ops := []op{
		{"healthz", healthz, nil},
		{"wrap-A256KW", func(b *testing.B) { post(b, "/keys/oct/wrapkey", body("A256KW", dek)) },
			func(b *testing.B) { keyops.WrapKey(rand.Reader, octP, keyops.A256KW, dek) }},
		{"wrap-RSA-OAEP-256", func(b *testing.B) { post(b, "/keys/rsa/wrapkey", body("RSA-OAEP-256", dek)) },
			func(b *testing.B) { keyops.WrapKey(rand.Reader, rsaP, keyops.RSAOAEP256, dek) }},
		{"unwrap-RSA-OAEP-256", func(b *testing.B) { post(b, "/keys/rsa/unwrapkey", body("RSA-OAEP-256", rsaWrapped)) },
			func(b *testing.B) { keyops.UnwrapKey(rsaP, keyops.RSAOAEP256, rsaWrapped) }},
		{"sign-ES256", func(b *testing.B) { post(b, "/keys/ec/sign", body("ES256", digest[:])) },
			func(b *testing.B) { keyops.Sign(rand.Reader, ecP, keyops.ES256, digest[:]) }},
		{"sign-RS256", func(b *testing.B) { post(b, "/keys/rsa/sign", body("RS256", digest[:])) },
			func(b *testing.B) { keyops.Sign(rand.Reader, rsaP, keyops.RS256, digest[:]) }},
	}
	for _, o := range ops {
		if o.raw != nil {
			b.Run(o.name+"/raw-go", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					o.raw(b)
				}
			})
		}
		for _, c := range []int{1, 8, 32} {
			b.Run(o.name+"/https/c="+strconv.Itoa(c), func(b *testing.B) {
				b.ReportAllocs()
				if c == 1 {
					for b.Loop() {
						o.http(b)
					}
					return
				}
				b.SetParallelism(max(1, c/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						o.http(b)
					}
				})
			})
		}
	}
}
