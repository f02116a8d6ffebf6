// Package client is the plumbing of cvault's admin CLI (design §1 admin
// verbs; issues 3 and 4): it finds the server, its CA and the caller's
// credentials, obtains tokens with azidentity's ClientSecretCredential
// exactly as a user's program would (custom authority host, instance
// discovery disabled), and makes ARM and Graph-shaped REST calls, turning
// Azure's error envelopes into *APIError.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/cvault/cvault/internal/localdial"
)

// Defaults used when neither flags nor the data dir say otherwise.
const (
	DefaultServer   = "https://localhost:8443"
	DefaultDataDir  = "./cvault-data"
	CredentialsFile = "admin.json" // written by `cvault serve` on the first start
	CAFile          = "ca.pem"
	// GraphScope is the scope of the Graph-shaped directory API.
	GraphScope = "https://graph.microsoft.com/.default"
	// SecretEnv holds a client secret given with --client-id (never on argv).
	SecretEnv = "CVAULT_CLIENT_SECRET"
)

// ARM api-versions the CLI sends: the ones the Azure SDK modules send.
const (
	VersionResources     = "2024-11-01"
	VersionSubscriptions = "2022-12-01"
	VersionMSI           = "2024-11-30"
	VersionAuthorization = "2022-04-01"
)

// Sentinel errors.
var (
	ErrNoCredentials = errors.New("no credentials")
	ErrNotFound      = errors.New("not found")
)

// Options say where the server, its CA and the credentials are. Zero
// fields take the documented defaults.
type Options struct {
	Server          string // base URL; default: the authority base in the credentials file, else DefaultServer
	DataDir         string // default DefaultDataDir
	CAFile          string // default $SSL_CERT_FILE, else DataDir/ca.pem
	CredentialsFile string // default DataDir/admin.json
	// TenantID and ClientID with ClientSecret (from SecretEnv) replace the
	// credentials file.
	TenantID, ClientID, ClientSecret string
	// HTTPClient replaces the CA-trusting loopback client (tests).
	HTTPClient *http.Client
}

// Credentials are client credentials in admin.json's shape.
type Credentials struct {
	TenantID     string `json:"tenantId"`
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret"`
	ObjectID     string `json:"objectId,omitempty"`
	Authority    string `json:"authority,omitempty"`
}

// String hides the secret.
func (c Credentials) String() string {
	return "Credentials{" + c.TenantID + " " + c.ClientID + " REDACTED}"
}

// ReadCredentials reads an admin.json-shaped file.
func ReadCredentials(path string) (Credentials, error) {
	var c Credentials
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if c.TenantID == "" || c.ClientID == "" || c.ClientSecret == "" {
		return c, fmt.Errorf("%s: tenantId, clientId and clientSecret are required: %w", path, ErrNoCredentials)
	}
	return c, nil
}

// WriteCredentials writes c to path readable by its owner only; an
// existing file is not overwritten.
func WriteCredentials(path string, c Credentials) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write credentials: %w", err)
	}
	return f.Close()
}

// Client calls one cvault server as one principal.
type Client struct {
	BaseURL  string // no trailing slash
	TenantID string
	ClientID string
	HTTP     *http.Client
	cred     azcore.TokenCredential
}

// New resolves opts and builds the credential. It does no I/O beyond
// reading local files; the first call fetches a token.
func New(opts Options) (*Client, error) {
	if opts.DataDir == "" {
		opts.DataDir = DefaultDataDir
	}
	if opts.CredentialsFile == "" {
		opts.CredentialsFile = filepath.Join(opts.DataDir, CredentialsFile)
	}
	creds, err := resolveCredentials(opts)
	if err != nil {
		return nil, err
	}
	base := opts.Server
	if base == "" && creds.Authority != "" {
		base = authorityBase(creds.Authority)
	}
	if base == "" {
		base = DefaultServer
	}
	base = strings.TrimRight(base, "/")
	if u, err := url.Parse(base); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("--server %q: want https://HOST[:PORT]", base)
	}
	hc := opts.HTTPClient
	if hc == nil {
		pool, err := LoadCA(opts.CAFile, opts.DataDir)
		if err != nil {
			return nil, err
		}
		hc = localdial.Client(pool)
	}
	cred, err := azidentity.NewClientSecretCredential(creds.TenantID, creds.ClientID, creds.ClientSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: ClientOptions(base, hc), DisableInstanceDiscovery: true})
	if err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	return &Client{BaseURL: base, TenantID: creds.TenantID, ClientID: creds.ClientID, HTTP: hc, cred: cred}, nil
}

// ClientOptions configures an Azure SDK client for a cvault server at
// base, as cvaulttest.Server.ClientOptions does for tests.
func ClientOptions(base string, hc *http.Client) azcore.ClientOptions {
	return azcore.ClientOptions{
		Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: base + "/", Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Audience: base, Endpoint: base}}},
		Transport: hc,
	}
}

func resolveCredentials(o Options) (Credentials, error) {
	if o.ClientID != "" {
		if o.TenantID == "" {
			return Credentials{}, fmt.Errorf("--client-id needs --tenant: %w", ErrNoCredentials)
		}
		if o.ClientSecret == "" {
			return Credentials{}, fmt.Errorf("--client-id needs the secret in $%s: %w", SecretEnv, ErrNoCredentials)
		}
		return Credentials{TenantID: o.TenantID, ClientID: o.ClientID, ClientSecret: o.ClientSecret}, nil
	}
	c, err := ReadCredentials(o.CredentialsFile)
	if errors.Is(err, fs.ErrNotExist) {
		return c, fmt.Errorf("%s not found (pass --data, --credentials, or --tenant/--client-id with $%s): %w",
			o.CredentialsFile, SecretEnv, ErrNoCredentials)
	}
	if err != nil {
		return c, err
	}
	if o.TenantID != "" && !strings.EqualFold(o.TenantID, c.TenantID) {
		return c, fmt.Errorf("--tenant %s differs from %s's tenant %s (pass that tenant's --client-id or --credentials): %w",
			o.TenantID, o.CredentialsFile, c.TenantID, ErrNoCredentials)
	}
	return c, nil
}

// authorityBase cuts the tenant from an authority URL (BASE/{tenant}).
func authorityBase(a string) string {
	a = strings.TrimRight(a, "/")
	if i := strings.LastIndex(a, "/"); i > len("https://") {
		return a[:i]
	}
	return a
}

// LoadCA returns the roots to trust: file alone when given; otherwise
// the certificates of $SSL_CERT_FILE and of dataDir/ca.pem, whichever
// exist (a system-wide SSL_CERT_FILE must not hide the data dir's CA).
func LoadCA(file, dataDir string) (*x509.CertPool, error) {
	files := []string{file}
	if file == "" {
		files = []string{os.Getenv("SSL_CERT_FILE"), filepath.Join(dataDir, CAFile)}
	}
	pool := x509.NewCertPool()
	found := false
	for _, f := range files {
		if f == "" {
			continue
		}
		pem, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) && file == "" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("CA: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA: no certificate in %s", f)
		}
		found = true
	}
	if !found {
		return nil, fmt.Errorf("CA: neither $SSL_CERT_FILE nor %s exists (pass --ca or --data)", filepath.Join(dataDir, CAFile))
	}
	return pool, nil
}

// APIError is an error answer of the server.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, e.Message)
}

// Is makes a 404 match ErrNotFound.
func (e *APIError) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// ARMScope is the scope of tokens for the resource manager.
func (c *Client) ARMScope() string { return c.BaseURL + "/.default" }

// ARM calls a resource-manager path with api-version.
func (c *Client) ARM(ctx context.Context, method, path, apiVersion string, body, out any) error {
	u := c.BaseURL + path
	if apiVersion != "" {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		u += sep + "api-version=" + url.QueryEscape(apiVersion)
	}
	return c.Do(ctx, method, u, c.ARMScope(), body, out)
}

// Graph calls a path under /graph/v1.0.
func (c *Client) Graph(ctx context.Context, method, path string, body, out any) error {
	return c.Do(ctx, method, c.BaseURL+"/graph/v1.0"+path, GraphScope, body, out)
}

// maxResponse bounds what the CLI reads from one answer.
const maxResponse = 16 << 20

// Do sends body as JSON with a token for scope and decodes the answer
// into out (when non-nil and the answer has a body).
func (c *Client) Do(ctx context.Context, method, u, scope string, body, out any) error {
	_, err := c.send(ctx, method, u, scope, body, out)
	return err
}

// send is Do that also returns the answer's header.
func (c *Client) send(ctx context.Context, method, u, scope string, body, out any) (http.Header, error) {
	tok, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
	if err != nil {
		return nil, fmt.Errorf("token for %s: %w", scope, err)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, redactQuery(u), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, redactQuery(u), err)
	}
	if resp.StatusCode >= 300 {
		return nil, parseError(resp.StatusCode, b)
	}
	if out == nil || len(bytes.TrimSpace(b)) == 0 {
		return resp.Header, nil
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(out); err != nil {
		return nil, fmt.Errorf("%s %s: decode: %w", method, redactQuery(u), err)
	}
	return resp.Header, nil
}

// maxPolls bounds how often an ARM operation is polled (cvault finishes
// its operations before answering; the loop guards a slow server).
const maxPolls = 60

// ARMDelete deletes an ARM resource and, when the answer is an
// asynchronous operation (202 with Azure-AsyncOperation), waits for it.
func (c *Client) ARMDelete(ctx context.Context, path, apiVersion string) error {
	return c.ARMWait(ctx, http.MethodDelete, path, apiVersion, nil, nil)
}

// ARMWait sends an ARM request (PUT, PATCH, DELETE, POST action) and, when
// the answer is an asynchronous operation (Azure-AsyncOperation), waits
// for it; a Failed operation is an *APIError with the operation's code.
func (c *Client) ARMWait(ctx context.Context, method, path, apiVersion string, body, out any) error {
	h, err := c.send(ctx, method, c.BaseURL+path+"?api-version="+url.QueryEscape(apiVersion), c.ARMScope(), body, out)
	if err != nil {
		return err
	}
	op := h.Get("Azure-AsyncOperation")
	if op == "" {
		return nil
	}
	for range maxPolls {
		var st struct {
			Status string `json:"status"`
			Error  *struct {
				Code, Message string
			} `json:"error"`
		}
		if err := c.Do(ctx, http.MethodGet, op, c.ARMScope(), nil, &st); err != nil {
			return fmt.Errorf("poll operation: %w", err)
		}
		switch strings.ToLower(st.Status) {
		case "succeeded":
			return nil
		case "failed", "canceled":
			e := &APIError{Status: http.StatusConflict, Code: st.Status}
			if st.Error != nil {
				e.Code, e.Message = st.Error.Code, st.Error.Message
			}
			return e
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return fmt.Errorf("%s %s: operation still running after %d polls", method, path, maxPolls)
}

func redactQuery(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

// parseError reads ARM/Graph's {"error":{"code","message"}} or Entra's
// {"error","error_description"}.
func parseError(status int, b []byte) error {
	e := &APIError{Status: status}
	var env struct {
		Error json.RawMessage `json:"error"`
		Desc  string          `json:"error_description"`
	}
	if json.Unmarshal(b, &env) == nil && len(env.Error) > 0 {
		var inner struct{ Code, Message string }
		if json.Unmarshal(env.Error, &inner) == nil {
			e.Code, e.Message = inner.Code, inner.Message
		} else {
			_ = json.Unmarshal(env.Error, &e.Code)
			e.Message = env.Desc
		}
	}
	if e.Code == "" && e.Message == "" {
		e.Message = strings.TrimSpace(string(b))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200] + "…"
		}
		if e.Message == "" {
			e.Message = http.StatusText(status)
		}
	}
	return e
}

// Subscription returns sub, or the first subscription the caller sees.
func (c *Client) Subscription(ctx context.Context, sub string) (string, error) {
	if sub != "" {
		return sub, nil
	}
	var page struct {
		Value []struct {
			SubscriptionID string `json:"subscriptionId"`
		} `json:"value"`
	}
	if err := c.ARM(ctx, http.MethodGet, "/subscriptions", VersionSubscriptions, nil, &page); err != nil {
		return "", fmt.Errorf("list subscriptions: %w", err)
	}
	if len(page.Value) == 0 {
		return "", fmt.Errorf("tenant %s has no subscription visible to this principal (pass --subscription): %w", c.TenantID, ErrNotFound)
	}
	return page.Value[0].SubscriptionID, nil
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// IsGUID reports whether s is a GUID.
func IsGUID(s string) bool { return guidRE.MatchString(s) }

// RoleDefinitionID resolves a role name (e.g. "Key Vault Crypto User") or
// GUID to the role definition's ARM ID under scope's subscription.
func (c *Client) RoleDefinitionID(ctx context.Context, scope, role string) (string, error) {
	sub := subscriptionOf(scope)
	if strings.Contains(role, "/providers/") {
		return role, nil
	}
	if IsGUID(role) {
		return sub + "/providers/Microsoft.Authorization/roleDefinitions/" + strings.ToLower(role), nil
	}
	var page struct {
		Value []struct {
			ID string `json:"id"`
		} `json:"value"`
	}
	filter := "roleName eq '" + strings.ReplaceAll(role, "'", "''") + "'"
	if err := c.ARM(ctx, http.MethodGet, sub+"/providers/Microsoft.Authorization/roleDefinitions?$filter="+url.QueryEscape(filter),
		VersionAuthorization, nil, &page); err != nil {
		return "", fmt.Errorf("role %q: %w", role, err)
	}
	if len(page.Value) != 1 {
		return "", fmt.Errorf("role %q: %d role definitions match: %w", role, len(page.Value), ErrNotFound)
	}
	return page.Value[0].ID, nil
}

// subscriptionOf returns "/subscriptions/{id}" of an ARM scope, or "".
func subscriptionOf(scope string) string {
	parts := strings.Split(strings.Trim(scope, "/"), "/")
	if len(parts) >= 2 && strings.EqualFold(parts[0], "subscriptions") {
		return "/subscriptions/" + parts[1]
	}
	return ""
}

// NewGUID returns a random version-4 GUID (role assignment names).
func NewGUID() (string, error) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]), nil
}
