package idhttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/msi/armmsi"

	"github.com/cvault/cvault/internal/app"
	"github.com/cvault/cvault/internal/cvaulttest"
	"github.com/cvault/cvault/internal/identity"
)

type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type env struct {
	t     *testing.T
	srv   *cvaulttest.Server
	clock *clock
	cred  *azidentity.ClientSecretCredential
}

func start(t *testing.T) *env {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	srv := cvaulttest.Start(t, cvaulttest.WithConfig(func(cfg *app.Config) { cfg.Now = c.Now }))
	if srv.Admin.Secret == "" {
		t.Fatal("no admin credentials")
	}
	return &env{t: t, srv: srv, clock: c, cred: srv.Credential(t)}
}

func token(t *testing.T, cred azcore.TokenCredential, tenant, scope string) string {
	t.Helper()
	tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{scope}, TenantID: tenant})
	if err != nil {
		t.Fatalf("GetToken(%s): %v", scope, err)
	}
	return tok.Token
}

// call sends a JSON request with a bearer token and decodes the answer.
func (e *env) call(method, path, bearer string, body any, want int, out any) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.srv.HTTPClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		e.t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

func claims(t *testing.T, tok string) identity.Claims {
	_, c, err := identity.ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientSecretCredential(t *testing.T) {
	e := start(t)
	tok := token(t, e.cred, "", e.srv.URL+"/.default")
	c := claims(t, tok)
	if c.TenantID != e.srv.Admin.TenantID || c.AzP != e.srv.Admin.ClientID || c.Issuer != e.srv.URL+"/"+c.TenantID+"/v2.0" {
		t.Fatalf("claims = %+v", c)
	}
	// The token works on ARM: the SDK creates a user-assigned identity.
	sub := e.srv.App.Bootstrap.SubscriptionID
	e.call("PUT", "/subscriptions/"+sub+"/resourcegroups/rg1?api-version=2021-04-01", tok, map[string]any{"location": "eastus"}, 201, nil)
	client, err := armmsi.NewUserAssignedIdentitiesClient(sub, e.cred, &arm.ClientOptions{ClientOptions: e.srv.ClientOptions(), DisableRPRegistration: true})
	if err != nil {
		t.Fatal(err)
	}
	loc := "eastus"
	res, err := client.CreateOrUpdate(context.Background(), "rg1", "mi1", armmsi.Identity{Location: &loc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Properties == nil || res.Properties.PrincipalID == nil || *res.Properties.TenantID != e.srv.Admin.TenantID {
		t.Fatalf("identity = %+v", res)
	}
	got, err := client.Get(context.Background(), "rg1", "mi1", nil)
	if err != nil || *got.Properties.ClientID != *res.Properties.ClientID {
		t.Fatalf("get: %v", err)
	}
	pager := client.NewListByResourceGroupPager("rg1", nil)
	page, err := pager.NextPage(context.Background())
	if err != nil || len(page.Value) != 1 {
		t.Fatalf("list: %d, %v", len(page.Value), err)
	}
	if _, err := client.Delete(context.Background(), "rg1", "mi1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get(context.Background(), "rg1", "mi1", nil); err == nil || !strings.Contains(err.Error(), "ResourceNotFound") {
		t.Fatalf("get after delete: %v", err)
	}
}

// seed003 performs seed 003's phase 1 over HTTP and returns what the
// provider then holds.
type seed003 struct {
	customer                 map[string]string
	appID, miClientID, miSec string
	graphCustomer            string
}

func (e *env) seed003(consent bool) seed003 {
	t := e.t
	var s seed003
	graph := token(t, e.cred, "", "https://graph.microsoft.com/.default")
	var tenant struct {
		Admin map[string]string `json:"admin"`
	}
	e.call("POST", "/graph/v1.0/tenants", graph, map[string]string{"displayName": "Customer"}, 201, &tenant)
	s.customer = tenant.Admin
	var app struct{ ID, AppID string }
	e.call("POST", "/graph/v1.0/applications", graph, map[string]string{"displayName": "isv-cmk", "signInAudience": "AzureADMultipleOrgs"}, 201, &app)
	s.appID = app.AppID
	armTok := token(t, e.cred, "", e.srv.URL+"/.default")
	sub := e.srv.App.Bootstrap.SubscriptionID
	e.call("PUT", "/subscriptions/"+sub+"/resourcegroups/rg-isv?api-version=2021-04-01", armTok, map[string]any{"location": "westcentralus"}, 201, nil)
	mi := "/subscriptions/" + sub + "/resourceGroups/rg-isv/providers/Microsoft.ManagedIdentity/userAssignedIdentities/cmk-uami"
	var ident struct {
		Properties struct{ PrincipalID, ClientID string }
	}
	e.call("PUT", mi+"?api-version=2024-11-30", armTok, map[string]any{"location": "WestCentralUS"}, 201, &ident)
	s.miClientID = ident.Properties.ClientID
	e.call("POST", "/graph/v1.0/applications/"+app.ID+"/federatedIdentityCredentials", graph, map[string]any{
		"name": "cmk-uami", "issuer": e.srv.URL + "/" + e.srv.Admin.TenantID + "/v2.0", "subject": ident.Properties.PrincipalID,
		"audiences": []string{"api://AzureADTokenExchange"}}, 201, nil)
	var sec struct{ Secret string }
	e.call("POST", mi+"/secret?api-version=2024-11-30", armTok, nil, 200, &sec)
	s.miSec = sec.Secret
	custCred, err := azidentity.NewClientSecretCredential(s.customer["tenantId"], s.customer["clientId"], s.customer["clientSecret"],
		&azidentity.ClientSecretCredentialOptions{ClientOptions: e.srv.ClientOptions(), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	s.graphCustomer = token(t, custCred, "", "https://graph.microsoft.com/.default")
	if consent {
		e.call("POST", "/graph/v1.0/servicePrincipals", s.graphCustomer, map[string]string{"appId": s.appID}, 201, nil)
	}
	return s
}

func (e *env) managedIdentity(s seed003) *azidentity.ManagedIdentityCredential {
	e.t.Setenv("IDENTITY_ENDPOINT", e.srv.URL+"/metadata/identity/oauth2/token")
	e.t.Setenv("IDENTITY_HEADER", s.miSec)
	mi, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
		ClientOptions: azcore.ClientOptions{Transport: e.srv.HTTPClient}, ID: azidentity.ClientID(s.miClientID)})
	if err != nil {
		e.t.Fatal(err)
	}
	return mi
}

func (e *env) assertionCredential(s seed003, mi azcore.TokenCredential) *azidentity.ClientAssertionCredential {
	cred, err := azidentity.NewClientAssertionCredential(s.customer["tenantId"], s.appID, func(ctx context.Context) (string, error) {
		tk, err := mi.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"api://AzureADTokenExchange/.default"}})
		return tk.Token, err
	}, &azidentity.ClientAssertionCredentialOptions{ClientOptions: e.srv.ClientOptions(), DisableInstanceDiscovery: true})
	if err != nil {
		e.t.Fatal(err)
	}
	return cred
}

func TestSeed003CrossTenantAssertion(t *testing.T) {
	e := start(t)
	s := e.seed003(true)
	mi := e.managedIdentity(s)
	miTok := token(t, mi, "", "api://AzureADTokenExchange/.default")
	if c := claims(t, miTok); c.MIResourceID == "" || c.AzP != s.miClientID || c.Audience[0] != "api://AzureADTokenExchange" {
		t.Fatalf("managed identity claims = %+v", c)
	}
	tok := token(t, e.assertionCredential(s, mi), "", "https://vault.azure.net/.default")
	c := claims(t, tok)
	if c.TenantID != s.customer["tenantId"] || c.AzP != s.appID || c.Audience[0] != "https://vault.azure.net" {
		t.Fatalf("customer token claims = %+v", c)
	}
	var sps struct {
		Value []struct{ ID, AppID string }
	}
	e.call("GET", "/graph/v1.0/servicePrincipals?$filter="+url.QueryEscape("appId eq '"+s.appID+"'"), s.graphCustomer, nil, 200, &sps)
	if len(sps.Value) != 1 || sps.Value[0].ID != c.ObjectID {
		t.Fatalf("customer service principal %+v, token oid %s", sps.Value, c.ObjectID)
	}
}

func TestSeed003WithoutConsent(t *testing.T) {
	e := start(t)
	s := e.seed003(false)
	_, err := e.assertionCredential(s, e.managedIdentity(s)).GetToken(context.Background(),
		policy.TokenRequestOptions{Scopes: []string{"https://vault.azure.net/.default"}})
	if err == nil || !strings.Contains(err.Error(), "AADSTS700016") {
		t.Fatalf("err = %v, want AADSTS700016", err)
	}
}

// entraError is Entra's token-endpoint error body.
type entraError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	Codes       []int  `json:"error_codes"`
	TraceID     string `json:"trace_id"`
}

func (e *env) postToken(tenant string, form url.Values) (int, entraError) {
	resp, err := e.srv.HTTPClient.PostForm(e.srv.URL+"/"+tenant+"/oauth2/v2.0/token", form)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var ee entraError
	_ = json.NewDecoder(resp.Body).Decode(&ee)
	return resp.StatusCode, ee
}

func TestEntraErrorCodes(t *testing.T) {
	e := start(t)
	s := e.seed003(true)
	graph := token(t, e.cred, "", "https://graph.microsoft.com/.default")
	// A client secret that expires in an hour, for AADSTS7000222.
	var admApp struct{ ID string }
	var apps struct{ Value []struct{ ID, AppID string } }
	e.call("GET", "/graph/v1.0/applications", graph, nil, 200, &apps)
	for _, a := range apps.Value {
		if a.AppID == e.srv.Admin.ClientID {
			admApp.ID = a.ID
		}
	}
	var pw struct{ SecretText string }
	e.call("POST", "/graph/v1.0/applications/"+admApp.ID+"/addPassword", graph,
		map[string]any{"passwordCredential": map[string]any{"displayName": "short", "endDateTime": e.clock.Now().Add(time.Hour)}}, 200, &pw)

	e.t.Setenv("IDENTITY_ENDPOINT", e.srv.URL+"/metadata/identity/oauth2/token")
	mi := e.managedIdentity(s)
	exchangeTok := token(t, mi, "", "api://AzureADTokenExchange/.default")
	vaultTok := token(t, mi, "", "https://vault.azure.net")
	parts := strings.Split(exchangeTok, ".")
	sig := []byte(parts[2])
	if sig[5] == 'A' { // another valid base64url character: a bad signature, not a malformed token
		sig[5] = 'B'
	} else {
		sig[5] = 'A'
	}
	tampered := parts[0] + "." + parts[1] + "." + string(sig)

	admin := e.srv.Admin
	secretForm := func(client, secret, scope string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {client}, "client_secret": {secret}, "scope": {scope}}
	}
	assertionForm := func(assertion string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {s.appID}, "client_assertion": {assertion},
			"client_assertion_type": {identity.JWTBearer}, "scope": {"https://vault.azure.net/.default"}}
	}
	const vault = "https://vault.azure.net/.default"
	for _, tt := range []struct {
		name   string
		tenant string
		form   url.Values
		after  time.Duration
		status int
		code   int
	}{
		{"tenant not found", "6b1f4a1e-0000-4000-8000-000000000000", secretForm(admin.ClientID, admin.Secret, vault), 0, 400, 90002},
		{"app not found", admin.TenantID, secretForm("6b1f4a1e-0000-4000-8000-000000000001", "x", vault), 0, 400, 700016},
		{"invalid secret", admin.TenantID, secretForm(admin.ClientID, "wrong", vault), 0, 401, 7000215},
		{"expired secret", admin.TenantID, secretForm(admin.ClientID, pw.SecretText, vault), 2 * time.Hour, 401, 7000222},
		{"invalid scope", admin.TenantID, secretForm(admin.ClientID, admin.Secret, "https://vault.azure.net/read"), 0, 400, 70011},
		{"assertion signature", s.customer["tenantId"], assertionForm(tampered), 0, 401, 700027},
		{"assertion expired", s.customer["tenantId"], assertionForm(exchangeTok), 3 * time.Hour, 401, 700024},
		{"no matching federated identity record", s.customer["tenantId"], assertionForm(vaultTok), 0, 400, 70021},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.clock.Advance(tt.after)
			defer e.clock.Advance(-tt.after)
			status, ee := e.postToken(tt.tenant, tt.form)
			prefix := "AADSTS" + itoa(tt.code) + ": "
			if status != tt.status || len(ee.Codes) != 1 || ee.Codes[0] != tt.code || !strings.HasPrefix(ee.Description, prefix) ||
				ee.Error == "" || ee.TraceID == "" {
				t.Fatalf("status %d body %+v, want %d with AADSTS%d", status, ee, tt.status, tt.code)
			}
		})
	}
	// azidentity surfaces the code too (tenant not found, from the OIDC metadata).
	bad, err := azidentity.NewClientSecretCredential("6b1f4a1e-0000-4000-8000-000000000000", admin.ClientID, admin.Secret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: e.srv.ClientOptions(), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{vault}}); err == nil || !strings.Contains(err.Error(), "AADSTS90002") {
		t.Fatalf("azidentity unknown tenant: %v", err)
	}
}

func TestManagedIdentityEndpointShapes(t *testing.T) {
	e := start(t)
	s := e.seed003(false)
	get := func(q string, h map[string]string) (int, map[string]string) {
		req, _ := http.NewRequest("GET", e.srv.URL+"/metadata/identity/oauth2/token?"+q, nil)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := e.srv.HTTPClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	imds := "api-version=2018-02-01&resource=https://vault.azure.net&client_id=" + s.miClientID
	if st, m := get(imds, map[string]string{"Metadata": "true", "X-IDENTITY-HEADER": s.miSec}); st != 200 || m["access_token"] == "" || m["expires_in"] == "" || m["token_type"] != "Bearer" {
		t.Fatalf("IMDS shape: %d %v", st, m)
	}
	if st, m := get(imds, nil); st != 400 || m["error"] != "invalid_request" {
		t.Fatalf("no Metadata header: %d %v", st, m)
	}
	if st, _ := get(imds, map[string]string{"X-IDENTITY-HEADER": strings.ToUpper(s.miSec[:33]) + "x" + strings.ToLower(s.miSec[33:])}); st != 401 {
		t.Fatalf("wrong secret: %d", st)
	}
	if st, m := get("api-version=2019-08-01&resource=https://vault.azure.net&client_id=00000000-0000-0000-0000-000000000000",
		map[string]string{"X-IDENTITY-HEADER": s.miSec}); st != 400 || m["error_description"] != "Identity not found" {
		t.Fatalf("unassigned identity: %d %v", st, m)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
