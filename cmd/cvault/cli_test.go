package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/cvault/cvault/internal/cvaulttest"
)

// cli runs a command against srv's data dir (admin.json, ca.pem) and
// fails the test on error.
func cli(t *testing.T, srv *cvaulttest.Server, args ...string) string {
	t.Helper()
	out, err := run(t, append(args, "--data", srv.Config.DataDir)...)
	if err != nil {
		t.Fatalf("cvault %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// cliJSON runs a command with -o json and decodes its answer.
func cliJSON(t *testing.T, srv *cvaulttest.Server, v any, args ...string) {
	t.Helper()
	out := cli(t, srv, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("cvault %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestAdminCLI performs seed 003's phase 1 with the CLI: a provider tenant
// (the bootstrap one) with a resource group, a user-assigned identity and a
// multi-tenant app whose federated credential is that identity; a customer
// tenant that consents to the app; an RBAC assignment; and the identity's
// secret driving the IMDS proxy, whose token is exchanged for the app's
// token in the customer tenant.
func TestAdminCLI(t *testing.T) {
	srv := cvaulttest.Start(t)
	dir := t.TempDir()

	// Tenants.
	var tenant struct {
		ID    string `json:"id"`
		Admin struct{ TenantID, ClientID, ClientSecret string }
	}
	custCreds := filepath.Join(dir, "customer.json")
	cliJSON(t, srv, &tenant, "tenant", "create", "Customer", "--save", custCreds)
	if tenant.ID == "" || tenant.Admin.ClientSecret != "saved to "+custCreds {
		t.Fatalf("tenant create = %+v", tenant)
	}
	if fi, err := os.Stat(custCreds); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved credentials: %v %v", fi, err)
	}
	if out := cli(t, srv, "tenant", "show", "--credentials", custCreds); !strings.Contains(out, tenant.ID) || !strings.Contains(out, "Customer") {
		t.Fatalf("tenant show (customer) = %s", out)
	}
	if out := cli(t, srv, "tenant", "list"); !strings.Contains(out, srv.Admin.TenantID) {
		t.Fatalf("tenant list = %s", out)
	}
	// A printed secret is announced as shown once.
	if out := cli(t, srv, "tenant", "create", "Other"); !strings.Contains(out, "shown once") {
		t.Fatalf("tenant create (table) = %s", out)
	}

	// Resource group and user-assigned identity in the provider tenant.
	if out := cli(t, srv, "group", "create", "rg1", "--location", "eastus"); !strings.Contains(out, "rg1") || !strings.Contains(out, "eastus") {
		t.Fatalf("group create = %s", out)
	}
	if out := cli(t, srv, "group", "list"); !strings.Contains(out, "rg1") {
		t.Fatalf("group list = %s", out)
	}
	var mi struct {
		ID         string `json:"id"`
		Properties struct{ PrincipalID, ClientID string }
	}
	cliJSON(t, srv, &mi, "identity", "create", "mi1", "-g", "rg1")
	if mi.Properties.PrincipalID == "" || mi.Properties.ClientID == "" {
		t.Fatalf("identity create = %+v", mi)
	}
	if out := cli(t, srv, "identity", "list"); !strings.Contains(out, mi.Properties.ClientID) {
		t.Fatalf("identity list = %s", out)
	}

	// The multi-tenant app, with the identity as its federated credential.
	var app struct{ ID, AppID, SignInAudience string }
	cliJSON(t, srv, &app, "app", "create", "isv-cmk", "--multi-tenant")
	if app.SignInAudience != "AzureADMultipleOrgs" {
		t.Fatalf("app create = %+v", app)
	}
	issuer := srv.URL + "/" + srv.Admin.TenantID + "/v2.0"
	if out := cli(t, srv, "app", "add-fic", app.AppID, "--name", "uami", "--issuer", issuer, "--subject", mi.Properties.PrincipalID); !strings.Contains(out, "api://AzureADTokenExchange") {
		t.Fatalf("app add-fic = %s", out)
	}
	if out := cli(t, srv, "app", "show", app.ID); !strings.Contains(out, app.AppID) {
		t.Fatalf("app show = %s", out)
	}
	// Identity-side FIC too (the ARM path of federatedIdentityCredentials).
	if out := cli(t, srv, "identity", "add-fic", "mi1", "-g", "rg1", "--name", "github", "--issuer", "https://token.actions.githubusercontent.com", "--subject", "repo:o/r:ref:refs/heads/main"); !strings.Contains(out, "repo:o/r") {
		t.Fatalf("identity add-fic = %s", out)
	}

	// Consent in the customer tenant.
	var sp struct{ ID, AppID, AppOwnerOrganizationID string }
	cliJSON(t, srv, &sp, "sp", "create", "--app-id", app.AppID, "--credentials", custCreds)
	if sp.ID == "" || !strings.EqualFold(sp.AppOwnerOrganizationID, srv.Admin.TenantID) {
		t.Fatalf("sp create = %+v", sp)
	}
	if out := cli(t, srv, "sp", "list", "--credentials", custCreds); !strings.Contains(out, app.AppID) {
		t.Fatalf("sp list = %s", out)
	}

	// RBAC: the identity may read rg1; the assignment shows in role list.
	scope := strings.TrimSuffix(mi.ID, "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/mi1")
	cli(t, srv, "role", "assign", "--role", "Reader", "--assignee", mi.Properties.PrincipalID, "--scope", scope, "--assignee-type", "ServicePrincipal")
	out := cli(t, srv, "role", "list", "--scope", scope, "--assignee", mi.Properties.PrincipalID)
	if !strings.Contains(out, "Reader") || !strings.Contains(out, mi.Properties.PrincipalID) {
		t.Fatalf("role list = %s", out)
	}
	if out := cli(t, srv, "role", "definitions", "--name", "Key Vault Crypto Service Encryption User"); !strings.Contains(out, "e147488a-f6f5-4113-8e2d-b22465e65bf6") {
		t.Fatalf("role definitions = %s", out)
	}

	// The identity's secret, written to a 0600 file, never printed.
	secretFile := filepath.Join(dir, "mi.secret")
	out = cli(t, srv, "identity", "secret", "mi1", "-g", "rg1", "--secret-file", secretFile)
	secret, err := os.ReadFile(secretFile)
	if err != nil || len(strings.TrimSpace(string(secret))) < 16 {
		t.Fatalf("secret file: %q %v", secret, err)
	}
	if strings.Contains(out, strings.TrimSpace(string(secret))) {
		t.Fatalf("identity secret --secret-file printed the secret: %s", out)
	}

	// The IMDS proxy serves azidentity's ManagedIdentityCredential.
	proxyAddr := startIMDSProxy(t, "--server", srv.URL, "--secret-file", secretFile, "--ca", filepath.Join(srv.Config.DataDir, "ca.pem"))
	miCred := imdsCredential(t, proxyAddr, mi.Properties.ClientID)
	ctx := context.Background()
	tok, err := miCred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{srv.URL + "/.default"}})
	if err != nil {
		t.Fatalf("ManagedIdentityCredential via imds-proxy: %v", err)
	}
	// The token is usable: the identity reads rg1 (its Reader role).
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+scope+"?api-version=2024-11-01", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	resp, err := srv.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET resource group with the MI token: %d", resp.StatusCode)
	}
	// Seed 003: the MI's exchange token is the app's assertion in the customer tenant.
	assertion := func(ctx context.Context) (string, error) {
		tk, err := miCred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"api://AzureADTokenExchange/.default"}})
		return tk.Token, err
	}
	appCred, err := azidentity.NewClientAssertionCredential(tenant.ID, app.AppID, assertion,
		&azidentity.ClientAssertionCredentialOptions{ClientOptions: srv.ClientOptions(), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := appCred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{srv.URL + "/.default"}}); err != nil {
		t.Fatalf("app token in the customer tenant from the MI assertion: %v", err)
	}

	// Cleanup verbs.
	var ras []struct{ ID string }
	cliJSON(t, srv, &ras, "role", "list", "--scope", scope, "--assignee", mi.Properties.PrincipalID)
	if len(ras) != 1 {
		t.Fatalf("role list -o json = %+v", ras)
	}
	cli(t, srv, "role", "delete", ras[0].ID)
	if out := cli(t, srv, "role", "list", "--scope", scope, "--assignee", mi.Properties.PrincipalID); strings.Contains(out, mi.Properties.PrincipalID) {
		t.Fatalf("role list after delete = %s", out)
	}
	cli(t, srv, "identity", "delete", "mi1", "-g", "rg1")
	if _, err := run(t, "identity", "show", "mi1", "-g", "rg1", "--data", srv.Config.DataDir); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("identity show after delete: %v", err)
	}
	cli(t, srv, "app", "delete", app.ID)
	cli(t, srv, "group", "delete", "rg1")
}

func TestCLIErrors(t *testing.T) {
	srv := cvaulttest.Start(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"group", "list", "-o", "yaml"}, "unknown output format"},
		{[]string{"app", "list", "--client-id", "x", "--tenant", "y"}, "CVAULT_CLIENT_SECRET"},
		{[]string{"app", "list", "--tenant", "00000000-0000-0000-0000-000000000000"}, "differs"},
		{[]string{"group", "show", "nope"}, "ResourceGroupNotFound"},
		{[]string{"role", "assign", "--role", "No Such Role", "--assignee", "00000000-0000-0000-0000-000000000000"}, "0 role definitions"},
		{[]string{"role", "delete", "/subscriptions/x"}, "not a role assignment ID"},
	} {
		_, err := run(t, append(tc.args, "--data", srv.Config.DataDir)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("cvault %s: err = %v, want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	if _, err := run(t, "tenant", "list", "--data", t.TempDir()); err == nil || !strings.Contains(err.Error(), "admin.json") {
		t.Errorf("empty data dir: err = %v", err)
	}
}

// TestCLIClientSecretFromEnv signs in with --tenant/--client-id and the
// secret in the environment (never on argv).
func TestCLIClientSecretFromEnv(t *testing.T) {
	srv := cvaulttest.Start(t)
	t.Setenv("CVAULT_CLIENT_SECRET", srv.Admin.Secret)
	out, err := run(t, "tenant", "show", "--tenant", srv.Admin.TenantID, "--client-id", srv.Admin.ClientID,
		"--server", srv.URL, "--ca", filepath.Join(srv.Config.DataDir, "ca.pem"), "--data", t.TempDir())
	if err != nil || !strings.Contains(out, srv.Admin.TenantID) {
		t.Fatalf("tenant show = %s, %v", out, err)
	}
}

// startIMDSProxy runs `cvault guest imds-proxy` on 127.0.0.1:0 until the
// test ends and returns its address.
func startIMDSProxy(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	cmd := newRoot()
	cmd.SetOut(pw)
	cmd.SetErr(pw)
	cmd.SetArgs(append([]string{"guest", "imds-proxy", "--listen", "127.0.0.1:0", "--log-level", "error"}, args...))
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx); pw.Close() }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("imds-proxy: %v", err)
		}
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("imds-proxy did not start: %v %q", err, line)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	m := regexp.MustCompile(`http://(127\.0\.0\.1:\d+)/`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("imds-proxy said %q", line)
	}
	return m[1]
}

// imdsCredential is azidentity's ManagedIdentityCredential on its IMDS
// source (no IDENTITY_ENDPOINT/MSI_ENDPOINT). MSAL-Go hard-codes
// 169.254.169.254 and reads no variable that moves it
// (AZURE_POD_IDENTITY_AUTHORITY_HOST is declared but unused in v1.10.1;
// IMDS_ENDPOINT only selects Azure Arc), so the transport dials the proxy
// for that address instead, as a guest with the address on its loopback
// would; nothing ever connects to 169.254.169.254.
func imdsCredential(t *testing.T, proxyAddr, clientID string) *azidentity.ManagedIdentityCredential {
	t.Helper()
	for _, k := range []string{"IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT"} {
		t.Setenv(k, "")
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{Proxy: nil, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != "169.254.169.254:80" {
			t.Errorf("IMDS client dialed %s", addr)
			return nil, &net.AddrError{Err: "unexpected address", Addr: addr}
		}
		return d.DialContext(ctx, network, proxyAddr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
		ID: azidentity.ClientID(clientID), ClientOptions: azcore.ClientOptions{Transport: &http.Client{Transport: tr}}})
	if err != nil {
		t.Fatal(err)
	}
	return cred
}
