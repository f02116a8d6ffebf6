package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cvault/cvault/internal/app"
	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/cvaulttest"
)

// tokens is a test authenticator: the bearer token names the principal.
// It stands in for the identity service at the system boundary.
type tokens map[string]*authn.Principal

func (tk tokens) Authenticate(_ context.Context, token string, _ []string) (*authn.Principal, error) {
	if p, ok := tk[token]; ok {
		return p, nil
	}
	return nil, authn.ErrInvalidToken
}

// adminTokens authenticates "admin" as the bootstrap admin and "other" as
// someone else in the same tenant; the bootstrap record is read after start.
func withTokens(tk tokens) cvaulttest.Option {
	return cvaulttest.WithConfig(func(c *app.Config) { c.Authenticator = tk })
}

func start(t *testing.T, opts ...cvaulttest.Option) (*cvaulttest.Server, tokens) {
	t.Helper()
	tk := tokens{}
	srv := cvaulttest.Start(t, append(opts, withTokens(tk))...)
	b := srv.App.Bootstrap
	tk["admin"] = &authn.Principal{TenantID: b.TenantID, ObjectID: b.AdminObjectID, Type: authn.ServicePrincipal}
	tk["other"] = &authn.Principal{TenantID: b.TenantID, ObjectID: "00000000-0000-0000-0000-0000000000aa", Type: authn.ServicePrincipal}
	return srv, tk
}

type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r resp) errorCode(t *testing.T) string {
	t.Helper()
	var env struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &env); err != nil {
		t.Fatalf("not an Azure error envelope (%d): %s", r.Status, r.Body)
	}
	return env.Error.Code
}

func do(t *testing.T, srv *cvaulttest.Server, method, path, token string, body string) resp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("x-ms-client-request-id", "test-cid")
	res, err := srv.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

func TestHealthOverTLS(t *testing.T) {
	srv, _ := start(t)
	for _, p := range []string{"/healthz", "/readyz"} {
		r := do(t, srv, "GET", p, "", "")
		if r.Status != 200 || r.Header.Get("x-ms-request-id") == "" || r.Header.Get("x-ms-client-request-id") != "test-cid" {
			t.Errorf("GET %s = %d %v", p, r.Status, r.Header)
		}
	}
	r := do(t, srv, "GET", "/metrics", "", "")
	if r.Status != 200 || !bytes.Contains(r.Body, []byte(`cvault_http_requests_total{code="200",route="GET /healthz"}`)) {
		t.Errorf("metrics missing the healthz counter: %d", r.Status)
	}
}

func TestAPIVersionAndAuthErrors(t *testing.T) {
	srv, _ := start(t)
	sub := srv.App.Bootstrap.SubscriptionID
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"missing api-version", "GET", "/subscriptions/" + sub, "admin", "", 400, "MissingApiVersionParameter"},
		{"unknown api-version", "GET", "/subscriptions/" + sub + "?api-version=1999-01-01", "admin", "", 400, "InvalidApiVersionParameter"},
		{"no token", "GET", "/subscriptions/" + sub + "?api-version=2022-12-01", "", "", 401, "AuthenticationFailed"},
		{"bad token", "GET", "/subscriptions/" + sub + "?api-version=2022-12-01", "forged", "", 401, "InvalidAuthenticationToken"},
		{"not allowed", "PUT", "/subscriptions/" + sub + "/resourceGroups/rg1?api-version=2021-04-01", "other", `{"location":"eastus"}`, 403, "AuthorizationFailed"},
		{"unknown subscription", "GET", "/subscriptions/nope?api-version=2022-12-01", "admin", "", 404, "SubscriptionNotFound"},
		{"no route", "GET", "/nothing/here", "", "", 404, "NotFound"},
		{"wrong method", "POST", "/healthz", "", "", 405, "MethodNotAllowed"},
		{"malformed json", "PUT", "/subscriptions/" + sub + "/resourceGroups/rg1?api-version=2021-04-01", "admin", `{"location":`, 400, "InvalidRequestContent"},
		{"wrong type", "PUT", "/subscriptions/" + sub + "/resourceGroups/rg1?api-version=2021-04-01", "admin", `{"location":5}`, 400, "InvalidRequestContent"},
		{"oversized", "PUT", "/subscriptions/" + sub + "/resourceGroups/rg1?api-version=2021-04-01", "admin", `{"location":"` + strings.Repeat("a", 2<<20) + `"}`, 413, "RequestEntityTooLarge"},
		{"bad location", "PUT", "/subscriptions/" + sub + "/resourceGroups/rg1?api-version=2021-04-01", "admin", `{"location":"moon"}`, 400, "LocationNotAvailableForResourceType"},
		{"bad name", "PUT", "/subscriptions/" + sub + "/resourceGroups/bad%21name?api-version=2021-04-01", "admin", `{"location":"eastus"}`, 400, "InvalidResourceGroup"},
		{"missing group", "GET", "/subscriptions/" + sub + "/resourceGroups/none?api-version=2021-04-01", "admin", "", 404, "ResourceGroupNotFound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, srv, tc.method, tc.path, tc.token, tc.body)
			if r.Status != tc.status || r.errorCode(t) != tc.code {
				t.Errorf("%s %s = %d %s, want %d %s", tc.method, tc.path, r.Status, r.Body, tc.status, tc.code)
			}
		})
	}
	// Nothing was written by the refused requests.
	if r := do(t, srv, "GET", "/subscriptions/"+sub+"/resourceGroups/rg1?api-version=2021-04-01", "admin", ""); r.Status != 404 {
		t.Errorf("a refused PUT left a resource group behind: %d", r.Status)
	}
}

func TestResourceGroupLifecycle(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { srv, _ := start(t); resourceGroupLifecycle(t, srv) })
	t.Run("postgres", func(t *testing.T) { srv, _ := start(t, cvaulttest.WithPostgres(t)); resourceGroupLifecycle(t, srv) })
}

func resourceGroupLifecycle(t *testing.T, srv *cvaulttest.Server) {
	sub := srv.App.Bootstrap.SubscriptionID
	rg := "/subscriptions/" + sub + "/resourceGroups/Seed-RG?api-version=2021-04-01"
	r := do(t, srv, "PUT", rg, "admin", `{"location":"West Central US","tags":{"seed":"003"}}`)
	if r.Status != 201 {
		t.Fatalf("create = %d %s", r.Status, r.Body)
	}
	var g struct {
		ID, Name, Location string
		Properties         struct{ ProvisioningState string }
	}
	json.Unmarshal(r.Body, &g)
	if g.Name != "Seed-RG" || g.Location != "westcentralus" || g.Properties.ProvisioningState != "Succeeded" ||
		g.ID != "/subscriptions/"+sub+"/resourceGroups/Seed-RG" {
		t.Errorf("created group = %+v", g)
	}
	if r := do(t, srv, "PUT", strings.ToLower(rg), "admin", `{"location":"westcentralus"}`); r.Status != 200 {
		t.Errorf("update (other casing) = %d %s", r.Status, r.Body)
	}
	if r := do(t, srv, "PUT", rg, "admin", `{"location":"eastus"}`); r.Status != 409 {
		t.Errorf("moving a group = %d %s", r.Status, r.Body)
	}
	if r := do(t, srv, "HEAD", rg, "admin", ""); r.Status != 204 {
		t.Errorf("HEAD = %d", r.Status)
	}
	r = do(t, srv, "GET", "/subscriptions/"+sub+"/resourcegroups?api-version=2021-04-01", "admin", "")
	if r.Status != 200 || !bytes.Contains(r.Body, []byte(`"name":"Seed-RG"`)) {
		t.Errorf("list = %d %s", r.Status, r.Body)
	}
	r = do(t, srv, "DELETE", rg, "admin", "")
	if r.Status != 202 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("delete = %d %v", r.Status, r.Header)
	}
	op := r.Header.Get("Azure-AsyncOperation")
	if !strings.HasPrefix(op, srv.URL+"/") {
		t.Fatalf("Azure-AsyncOperation %q is not absolute on the base URL", op)
	}
	r = do(t, srv, "GET", strings.TrimPrefix(op, srv.URL), "admin", "")
	if r.Status != 200 || !bytes.Contains(r.Body, []byte(`"status":"Succeeded"`)) {
		t.Errorf("operation = %d %s", r.Status, r.Body)
	}
	if r := do(t, srv, "HEAD", rg, "admin", ""); r.Status != 404 {
		t.Errorf("HEAD after delete = %d", r.Status)
	}
}

func TestRestartReusesCAAndBaseURL(t *testing.T) {
	srv, _ := start(t)
	cfg := srv.Config
	ca := srv.App.CA.Cert.Raw
	srv.App.Close() // release the store file; cleanup's Close is then a no-op error we ignore
	cfg.Listener = nil
	cfg.Listen = "127.0.0.1:0"
	cfg.URL = "https://elsewhere.example:9999"
	if _, err := app.New(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Fatalf("a different --url on the same store: err = %v", err)
	}
	cfg.URL = ""
	a, err := app.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if !bytes.Equal(a.CA.Cert.Raw, ca) || a.BaseURL.String() != srv.URL || a.Bootstrap != srv.App.Bootstrap {
		t.Errorf("restart changed CA/base URL/bootstrap: %s vs %s", a.BaseURL, srv.URL)
	}
}

func TestPostgresNeedsTheRightRootKey(t *testing.T) {
	pg := cvaulttest.Postgres(t)
	srv := cvaulttest.Start(t, pg.Option())
	cfg := srv.Config
	cfg.Listener, cfg.Listen, cfg.URL = nil, "127.0.0.1:0", ""
	cfg.RootKey = nil
	if _, err := app.New(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "root key") {
		t.Errorf("postgres without a root key: err = %v", err)
	}
	cfg.RootKey = bytes.Repeat([]byte{1}, 32)
	if _, err := app.New(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("postgres with a wrong root key: err = %v", err)
	}
}

func TestTwoServersOneDatabase(t *testing.T) {
	pg := cvaulttest.Postgres(t)
	tk := tokens{}
	a := cvaulttest.Start(t, pg.Option(), withTokens(tk))
	b := a.Config
	ln2 := mustListen(t)
	b.Listener, b.URL = ln2, a.URL
	b.DataDir = t.TempDir()
	srvB := cvaulttest.StartConfig(t, b)
	if srvB.App.Bootstrap != a.App.Bootstrap || srvB.App.CA.Cert.SerialNumber.Cmp(a.App.CA.Cert.SerialNumber) != 0 {
		t.Fatal("second server did not share the bootstrap and CA")
	}
	boot := a.App.Bootstrap
	tk["admin"] = &authn.Principal{TenantID: boot.TenantID, ObjectID: boot.AdminObjectID}
	rg := "/subscriptions/" + boot.SubscriptionID + "/resourceGroups/shared?api-version=2021-04-01"
	if r := do(t, a, "PUT", rg, "admin", `{"location":"eastus"}`); r.Status != 201 {
		t.Fatalf("PUT on A = %d %s", r.Status, r.Body)
	}
	// B shares A's base URL (they are one service), so address B's listener directly.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "https://localhost:"+portOf(ln2.Addr().String())+rg, nil)
	req.Header.Set("Authorization", "Bearer admin")
	res, err := srvB.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("GET on B = %d", res.StatusCode)
	}
}

func mustListen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// TestTwoServersShareDisks: with --store postgres://… disk blocks default to
// the store, so a page written through one server's listener with a signed
// URL reads back through the other, and neither writes {data}/disks.
func TestTwoServersShareDisks(t *testing.T) {
	ctx := t.Context()
	pg := cvaulttest.Postgres(t)
	a := cvaulttest.Start(t, pg.Option())
	b := a.Config
	ln2 := mustListen(t)
	b.Listener, b.URL = ln2, a.URL
	b.DataDir = t.TempDir()
	srvB := cvaulttest.StartConfig(t, b)
	if a.App.Config.DiskBlocks != app.DiskBlocksStore || srvB.App.Config.DiskBlocks != app.DiskBlocksStore {
		t.Fatalf("disk blocks %q, %q; want store with PostgreSQL", a.App.Config.DiskBlocks, srvB.App.Config.DiskBlocks)
	}
	dd := a.App.DiskData
	if err := dd.Create(ctx, "shared-disk", 1<<20, dd.Platform()); err != nil {
		t.Fatal(err)
	}
	sas, err := dd.GrantAccess(ctx, "shared-disk", time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(sas)
	if err != nil {
		t.Fatal(err)
	}
	page := bytes.Repeat([]byte("shared page "), 1024)[:8192]
	// Written through B's listener (B shares A's base URL, so address it directly)…
	onB := *u
	onB.Host = "localhost:" + portOf(ln2.Addr().String())
	q := onB.Query()
	q.Set("comp", "page")
	onB.RawQuery = q.Encode()
	req, _ := http.NewRequestWithContext(ctx, "PUT", onB.String(), bytes.NewReader(page))
	req.Header.Set("x-ms-page-write", "update")
	req.Header.Set("x-ms-range", "bytes=4096-12287")
	res, err := srvB.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("PUT page on B = %d", res.StatusCode)
	}
	// …read back through A.
	req, _ = http.NewRequestWithContext(ctx, "GET", sas, nil)
	req.Header.Set("x-ms-range", "bytes=4096-12287")
	res, err = a.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusPartialContent || !bytes.Equal(got, page) {
		t.Fatalf("GET on A = %d, %d bytes, equal %v, %v", res.StatusCode, len(got), bytes.Equal(got, page), err)
	}
	for _, dir := range []string{a.App.Config.DataDir, b.DataDir} {
		if _, err := os.Stat(filepath.Join(dir, "disks")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s/disks exists (%v): blocks went to the file system", dir, err)
		}
	}
}

func TestDiskBlocksFlag(t *testing.T) {
	if _, err := app.New(t.Context(), app.Config{DataDir: t.TempDir(), DiskBlocks: "nfs"}); err == nil || !strings.Contains(err.Error(), "--disk-blocks") {
		t.Fatalf("--disk-blocks nfs: %v", err)
	}
	s := cvaulttest.Start(t)
	if s.App.Config.DiskBlocks != app.DiskBlocksDir {
		t.Fatalf("embedded store: disk blocks %q, want dir", s.App.Config.DiskBlocks)
	}
}
