package kvhttp_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cvault/cvault/internal/app"
	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/authz"
	"github.com/cvault/cvault/internal/cvaulttest"
	"github.com/cvault/cvault/internal/keyvault"
)

// tokens stands in for the identity service: the bearer token names the
// principal, so a test can present any tenant and object id.
type tokens map[string]*authn.Principal

func (tk tokens) Authenticate(_ context.Context, token string, _ []string) (*authn.Principal, error) {
	if p, ok := tk[token]; ok {
		return p, nil
	}
	return nil, authn.ErrInvalidToken
}

const (
	oidOfficer = "00000000-0000-4000-8000-0000000000a1"
	oidEncUser = "00000000-0000-4000-8000-0000000000a2"
	oidPolicy  = "00000000-0000-4000-8000-0000000000a3"
	otherTen   = "99999999-0000-4000-8000-000000000000"
)

// fakeEnv is a server whose callers are named by tokens: "officer" (Key
// Vault Crypto Officer on the RBAC vault), "encuser" (Crypto Service
// Encryption User: read, wrap, unwrap), "policy" (access policy get +
// wrapKey on the access-policy vault) and "foreign" (another tenant).
type fakeEnv struct {
	*env
	tk tokens
}

func newFakeEnv(t *testing.T) *fakeEnv {
	tk := tokens{}
	e := &fakeEnv{env: newEnv(t, cvaulttest.WithConfig(func(c *app.Config) { c.Authenticator = tk })), tk: tk}
	ctx := t.Context()
	ten := e.tenant
	tk["officer"] = &authn.Principal{TenantID: ten, ObjectID: oidOfficer, Issuer: "iss"}
	tk["encuser"] = &authn.Principal{TenantID: ten, ObjectID: oidEncUser}
	tk["policy"] = &authn.Principal{TenantID: ten, ObjectID: oidPolicy}
	tk["foreign"] = &authn.Principal{TenantID: otherTen, ObjectID: oidOfficer}
	kv := e.srv.App.KeyVault
	mk := func(name, sku string, rbac bool, aps []authz.AccessPolicy) *keyvault.Vault {
		v, _, err := kv.PutVault(ctx, keyvault.Vault{Subscription: e.sub, ResourceGroup: "rg", Name: name, Location: "westeurope",
			Properties: keyvault.VaultProperties{TenantID: ten, SKU: sku, EnableRBACAuthorization: rbac, AccessPolicies: aps}}, ten)
		if err != nil {
			t.Fatal(err)
		}
		return &v
	}
	rb := mk("neg-rbac", keyvault.SKUPremium, true, nil)
	e.grant(t, rb.ID(), oidOfficer, authz.RoleKeyVaultCryptoOfficer)
	e.grant(t, rb.ID(), oidEncUser, authz.RoleKeyVaultCryptoServiceEncryption)
	mk("neg-std", keyvault.SKUStandard, true, nil)
	e.grant(t, "/subscriptions/"+e.sub+"/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/neg-std", oidOfficer, authz.RoleKeyVaultCryptoOfficer)
	mk("neg-ap", keyvault.SKUPremium, false, []authz.AccessPolicy{
		{TenantID: ten, ObjectID: oidPolicy, Permissions: authz.Permissions{Keys: []string{"get", "wrapKey"}}},
		{TenantID: ten, ObjectID: oidOfficer, Permissions: authz.Permissions{Keys: []string{"all"}}},
	})
	return e
}

type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) code() (string, string, string) {
	var env struct {
		Error struct {
			Code, Message string
			InnerError    *struct{ Code string } `json:"innererror"`
		} `json:"error"`
	}
	json.Unmarshal(r.body, &env)
	inner := ""
	if env.Error.InnerError != nil {
		inner = env.Error.InnerError.Code
	}
	return env.Error.Code, inner, env.Error.Message
}

// call sends a data-plane request to a vault host.
func (e *env) call(t testing.TB, vault, method, path, token, body string) result {
	t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	req, err := http.NewRequestWithContext(context.Background(), method, e.srv.VaultURL(vault)+path+sep+"api-version=7.5", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := e.srv.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return result{res.StatusCode, res.Header, b}
}

func (e *env) mustCall(t testing.TB, vault, method, path, token, body string) map[string]any {
	t.Helper()
	r := e.call(t, vault, method, path, token, body)
	if r.status != 200 {
		t.Fatalf("%s %s = %d %s", method, path, r.status, r.body)
	}
	var out map[string]any
	json.Unmarshal(r.body, &out)
	return out
}

// snapshot is every key-vault record's version: a refused request must
// leave it unchanged.
func (e *env) snapshot(t *testing.T) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, kind := range []string{keyvault.KindVault, keyvault.KindKey, keyvault.KindKeyVersion} {
		recs, err := e.srv.App.Store.List(t.Context(), kind, "", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			out[kind+"/"+r.Key] = r.Version
		}
	}
	return out
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestNegative(t *testing.T) {
	e := newFakeEnv(t)
	off := func(vault, method, path, body string) map[string]any {
		return e.mustCall(t, vault, method, path, "officer", body)
	}
	off("neg-rbac", "POST", "/keys/rsa/create", `{"kty":"RSA","key_size":2048}`)
	off("neg-rbac", "POST", "/keys/ec/create", `{"kty":"EC","crv":"P-256"}`)
	off("neg-rbac", "POST", "/keys/oct/create", `{"kty":"oct-HSM","key_size":256}`)
	off("neg-rbac", "POST", "/keys/off/create", `{"kty":"oct-HSM","attributes":{"enabled":false}}`)
	past, future := time.Now().Add(-time.Hour).Unix(), time.Now().Add(time.Hour).Unix()
	off("neg-rbac", "POST", "/keys/expired/create", fmt.Sprintf(`{"kty":"oct-HSM","attributes":{"exp":%d}}`, past))
	off("neg-rbac", "POST", "/keys/early/create", fmt.Sprintf(`{"kty":"oct-HSM","attributes":{"nbf":%d}}`, future))
	off("neg-ap", "POST", "/keys/apk/create", `{"kty":"oct-HSM"}`)
	off("neg-rbac", "POST", "/keys/gone/create", `{"kty":"EC"}`)
	off("neg-rbac", "DELETE", "/keys/gone", "")
	dek := b64(make([]byte, 32))
	wrap := `{"alg":"A256KW","value":"` + dek + `"}`
	goodPolicy := b64([]byte(`{"version":"1.0.0","anyOf":[{"authority":"https://attest.example","allOf":[{"claim":"x","equals":"y"}]}]}`))

	cases := []struct {
		name, vault, method, path, token, body string
		status                                 int
		code, inner, msg                       string
	}{
		{"wrong tenant", "neg-rbac", "GET", "/keys/ec/", "foreign", "", 401, "Unauthorized", "", "AKV10032"},
		{"rbac: create needs create/action", "neg-rbac", "POST", "/keys/new/create", "encuser", `{"kty":"EC"}`, 403, "Forbidden", "ForbiddenByRbac", "keys/create/action"},
		{"rbac: sign", "neg-rbac", "POST", "/keys/ec/sign", "encuser", `{"alg":"ES256","value":"` + b64(make([]byte, 32)) + `"}`, 403, "Forbidden", "ForbiddenByRbac", "keys/sign/action"},
		{"rbac: verify", "neg-rbac", "POST", "/keys/ec/verify", "encuser", `{}`, 403, "Forbidden", "ForbiddenByRbac", "keys/verify/action"},
		{"rbac: encrypt", "neg-rbac", "POST", "/keys/oct/encrypt", "encuser", `{}`, 403, "Forbidden", "ForbiddenByRbac", "keys/encrypt/action"},
		{"rbac: decrypt", "neg-rbac", "POST", "/keys/oct/decrypt", "encuser", `{}`, 403, "Forbidden", "ForbiddenByRbac", "keys/decrypt/action"},
		{"rbac: update", "neg-rbac", "PATCH", "/keys/oct/", "encuser", `{"attributes":{"enabled":false}}`, 403, "Forbidden", "ForbiddenByRbac", "keys/update/action"},
		{"rbac: delete", "neg-rbac", "DELETE", "/keys/oct", "encuser", "", 403, "Forbidden", "ForbiddenByRbac", "keys/delete"},
		{"rbac: rotate", "neg-rbac", "POST", "/keys/oct/rotate", "encuser", "", 403, "Forbidden", "ForbiddenByRbac", "keys/rotate/action"},
		{"rbac: import", "neg-rbac", "PUT", "/keys/imp", "encuser", `{"key":{"kty":"oct","k":"` + dek + `"}}`, 403, "Forbidden", "ForbiddenByRbac", "keys/import/action"},
		{"rbac: set rotation policy", "neg-rbac", "PUT", "/keys/oct/rotationpolicy", "encuser", `{"lifetimeActions":[]}`, 403, "Forbidden", "ForbiddenByRbac", "keyrotationpolicies/write"},
		{"rbac: recover", "neg-rbac", "POST", "/deletedkeys/gone/recover", "encuser", "", 403, "Forbidden", "ForbiddenByRbac", "keys/recover/action"},
		{"rbac: purge", "neg-rbac", "DELETE", "/deletedkeys/gone", "encuser", "", 403, "Forbidden", "ForbiddenByRbac", "keys/purge/action"},
		{"rbac: backup", "neg-rbac", "POST", "/keys/oct/backup", "encuser", "", 403, "Forbidden", "ForbiddenByRbac", "keys/backup/action"},
		{"rbac: restore", "neg-rbac", "POST", "/keys/restore", "encuser", `{"value":"AAAA"}`, 403, "Forbidden", "ForbiddenByRbac", "keys/restore/action"},
		{"policy: backup", "neg-ap", "POST", "/keys/apk/backup", "policy", "", 403, "Forbidden", "ForbiddenByPolicy", "keys backup permission"},
		{"policy: restore", "neg-ap", "POST", "/keys/restore", "policy", `{"value":"AAAA"}`, 403, "Forbidden", "ForbiddenByPolicy", "keys restore permission"},
		{"restore: malformed base64url", "neg-rbac", "POST", "/keys/restore", "officer", `{"value":"***"}`, 400, "BadParameter", "", ""},
		{"restore: not a backup", "neg-rbac", "POST", "/keys/restore", "officer", `{"value":"` + b64(make([]byte, 64)) + `"}`, 400, "BadParameter", "", "backup blob is invalid"},
		{"restore: no value", "neg-rbac", "POST", "/keys/restore", "officer", `{}`, 400, "BadParameter", "", "required"},
		{"policy: unwrap needs unwrapKey", "neg-ap", "POST", "/keys/apk/unwrapkey", "policy", `{"alg":"A256KW","value":"` + b64(make([]byte, 40)) + `"}`, 403, "Forbidden", "ForbiddenByPolicy", "keys unwrapKey permission"},
		{"policy: create", "neg-ap", "POST", "/keys/x/create", "policy", `{"kty":"EC"}`, 403, "Forbidden", "ForbiddenByPolicy", "keys create permission"},
		{"policy: delete", "neg-ap", "DELETE", "/keys/apk", "policy", "", 403, "Forbidden", "ForbiddenByPolicy", "keys delete permission"},
		{"policy: list", "neg-ap", "GET", "/keys", "policy", "", 403, "Forbidden", "ForbiddenByPolicy", "keys list permission"},
		{"disabled key", "neg-rbac", "POST", "/keys/off/wrapkey", "officer", wrap, 403, "Forbidden", "KeyDisabled", "disabled"},
		{"expired key", "neg-rbac", "POST", "/keys/expired/wrapkey", "officer", wrap, 403, "Forbidden", "KeyExpired", "expired"},
		{"not yet valid key", "neg-rbac", "POST", "/keys/early/wrapkey", "officer", wrap, 403, "Forbidden", "KeyNotYetValid", "not yet valid"},
		{"AES wrap on an RSA key", "neg-rbac", "POST", "/keys/rsa/wrapkey", "officer", wrap, 400, "BadParameter", "", "not valid for this key"},
		{"RS256 on an EC key", "neg-rbac", "POST", "/keys/ec/sign", "officer", `{"alg":"RS256","value":"` + b64(make([]byte, 32)) + `"}`, 400, "BadParameter", "", "not valid for this key"},
		{"unknown algorithm", "neg-rbac", "POST", "/keys/oct/wrapkey", "officer", `{"alg":"ROT13","value":"` + dek + `"}`, 400, "BadParameter", "", "not supported"},
		{"wrap on a sign-only key", "neg-rbac", "POST", "/keys/ec/wrapkey", "officer", `{"alg":"RSA-OAEP","value":"` + dek + `"}`, 400, "BadParameter", "", "not permitted"},
		{"oversized body", "neg-rbac", "POST", "/keys/oct/wrapkey", "officer", `{"alg":"A256KW","value":"` + strings.Repeat("A", 2<<20) + `"}`, 413, "RequestEntityTooLarge", "", ""},
		{"oversized value", "neg-rbac", "POST", "/keys/oct/encrypt", "officer", `{"alg":"A256GCM","value":"` + strings.Repeat("A", 100<<10) + `"}`, 400, "BadParameter", "", "larger than"},
		{"malformed base64url", "neg-rbac", "POST", "/keys/oct/wrapkey", "officer", `{"alg":"A256KW","value":"***not base64***"}`, 400, "BadParameter", "", ""},
		{"missing key", "neg-rbac", "GET", "/keys/nokey/", "officer", "", 404, "KeyNotFound", "", "nokey"},
		{"missing version", "neg-rbac", "POST", "/keys/oct/0123456789abcdef0123456789abcdef/wrapkey", "officer", wrap, 404, "KeyNotFound", "", "oct/0123"},
		{"name in deleted state", "neg-rbac", "POST", "/keys/gone/create", "officer", `{"kty":"EC"}`, 409, "Conflict", "", "deleted but recoverable"},
		{"HSM key in a standard vault", "neg-std", "POST", "/keys/h/create", "officer", `{"kty":"EC-HSM"}`, 400, "BadParameter", "", "premium"},
		{"exportable without policy", "neg-rbac", "POST", "/keys/x/create", "officer", `{"kty":"RSA-HSM","attributes":{"exportable":true}}`, 400, "BadParameter", "", "AKV.SKR.1004"},
		{"policy without exportable", "neg-rbac", "POST", "/keys/x/create", "officer", `{"kty":"RSA-HSM","release_policy":{"data":"` + goodPolicy + `"}}`, 400, "BadParameter", "", "AKV.SKR.1005"},
		{"exportable in a standard vault", "neg-std", "POST", "/keys/x/create", "officer", `{"kty":"RSA","attributes":{"exportable":true},"release_policy":{"data":"` + goodPolicy + `"}}`, 400, "BadParameter", "", "AKV.SKR.1001"},
		{"exportable software key", "neg-rbac", "POST", "/keys/x/create", "officer", `{"kty":"EC","attributes":{"exportable":true},"release_policy":{"data":"` + goodPolicy + `"}}`, 400, "BadParameter", "", "AKV.SKR.1006"},
		{"malformed release policy", "neg-rbac", "POST", "/keys/x/create", "officer", `{"kty":"EC-HSM","attributes":{"exportable":true},"release_policy":{"data":"` +
			b64([]byte(`{"version":"1.0.0","anyOf":[{"authority":"https://a.example","allOf":[{"claim":"x","bogus":"y"}]}]}`)) + `"}}`, 400, "BadParameter", "", "anyOf[0].allOf[0]"},
		{"unsupported key size", "neg-rbac", "POST", "/keys/x/create", "officer", `{"kty":"RSA","key_size":1024}`, 400, "BadParameter", "", "1024"},
		{"bad key name", "neg-rbac", "POST", "/keys/bad_name/create", "officer", `{"kty":"EC"}`, 400, "BadParameter", "", "invalid"},
		{"bad rotation policy", "neg-rbac", "PUT", "/keys/oct/rotationpolicy", "officer", `{"lifetimeActions":[{"trigger":{"timeAfterCreate":"30 days"},"action":{"type":"Rotate"}}]}`, 400, "BadParameter", "", "ISO 8601"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.snapshot(t)
			r := e.call(t, tc.vault, tc.method, tc.path, tc.token, tc.body)
			code, inner, msg := r.code()
			if r.status != tc.status || code != tc.code || inner != tc.inner || !strings.Contains(msg, tc.msg) {
				t.Errorf("= %d %s/%s %q, want %d %s/%s %q", r.status, code, inner, msg, tc.status, tc.code, tc.inner, tc.msg)
			}
			if tc.status != 413 && r.status != 401 && r.header.Get("x-ms-keyvault-region") != "westeurope" {
				t.Errorf("x-ms-keyvault-region = %q", r.header.Get("x-ms-keyvault-region"))
			}
			if tc.status == 401 && !strings.Contains(r.header.Get("WWW-Authenticate"), e.tenant) {
				t.Errorf("challenge %q does not name the vault's tenant", r.header.Get("WWW-Authenticate"))
			}
			if after := e.snapshot(t); !mapsEqual(before, after) {
				t.Errorf("the refused request changed the store")
			}
		})
	}
	// Positive controls: the same callers succeed where granted.
	e.mustCall(t, "neg-rbac", "POST", "/keys/oct/wrapkey", "encuser", wrap)
	e.mustCall(t, "neg-ap", "POST", "/keys/apk/wrapkey", "policy", wrap)
	// Purge protection refuses purge on the data plane too.
	pp, _, err := e.srv.App.KeyVault.PutVault(t.Context(), keyvault.Vault{Subscription: e.sub, ResourceGroup: "rg", Name: "neg-pp", Location: "westeurope",
		Properties: keyvault.VaultProperties{TenantID: e.tenant, SKU: keyvault.SKUPremium, EnablePurgeProtection: true,
			AccessPolicies: []authz.AccessPolicy{{TenantID: e.tenant, ObjectID: oidOfficer, Permissions: authz.Permissions{Keys: []string{"all"}}}}}}, e.tenant)
	if err != nil {
		t.Fatal(err)
	}
	e.mustCall(t, pp.Name, "POST", "/keys/p/create", "officer", `{"kty":"EC"}`)
	e.mustCall(t, pp.Name, "DELETE", "/keys/p", "officer", "")
	if r := e.call(t, pp.Name, "DELETE", "/deletedkeys/p", "officer", ""); r.status != 403 {
		t.Errorf("purge under purge protection = %d %s", r.status, r.body)
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestRotateWhileWrapping: parallel rotations and versionless wraps on one
// key; every wrap names a version that exists and unwraps to the input.
func TestRotateWhileWrapping(t *testing.T) {
	e := newFakeEnv(t)
	e.mustCall(t, "neg-rbac", "POST", "/keys/conc/create", "officer", `{"kty":"oct-HSM"}`)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 3 {
		wg.Go(func() {
			for range 5 {
				if r := e.call(t, "neg-rbac", "POST", "/keys/conc/rotate", "officer", ""); r.status != 200 {
					errs <- fmt.Errorf("rotate = %d %s", r.status, r.body)
				}
			}
		})
	}
	for i := range 6 {
		wg.Go(func() {
			for j := range 8 {
				dek := make([]byte, 32)
				dek[0], dek[1] = byte(i), byte(j)
				r := e.call(t, "neg-rbac", "POST", "/keys/conc/wrapkey", "officer", `{"alg":"A256KW","value":"`+b64(dek)+`"}`)
				var out struct{ KID, Value string }
				if json.Unmarshal(r.body, &out); r.status != 200 {
					errs <- fmt.Errorf("wrap = %d %s", r.status, r.body)
					continue
				}
				ver := out.KID[strings.LastIndex(out.KID, "/")+1:]
				u := e.call(t, "neg-rbac", "POST", "/keys/conc/"+ver+"/unwrapkey", "officer", `{"alg":"A256KW","value":"`+out.Value+`"}`)
				var un struct{ Value string }
				if json.Unmarshal(u.body, &un); u.status != 200 || un.Value != b64(dek) {
					errs <- fmt.Errorf("unwrap with %s = %d %s", ver, u.status, u.body)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	vs := e.mustCall(t, "neg-rbac", "GET", "/keys/conc/versions", "officer", "")
	if n := len(vs["value"].([]any)); n != 16 {
		t.Errorf("%d versions after 15 rotations, want 16", n)
	}
}
