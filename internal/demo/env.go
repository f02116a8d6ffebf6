package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/cvault/cvault/internal/app"
	"github.com/cvault/cvault/internal/localdial"
)

// Env is a running demo server and how to reach it.
type Env struct {
	App       *app.App
	URL       string
	HTTP      *http.Client
	Admin     Tenant
	VaultPort string
	VaultZone string
	DEKTTL    time.Duration
}

// Tenant is a tenant's administrator, as the demo's actors sign in.
type Tenant struct {
	ID, ClientID, Secret, ObjectID, Subscription string
	Cred                                         azcore.TokenCredential
}

// EnvOptions configure StartEnv.
type EnvOptions struct {
	// DEKCacheTTL of the server (default 2 s, so a key switch-off visibly
	// reaches disk reads); negative disables the cache.
	DEKCacheTTL time.Duration
	// DataDir is used instead of a temporary directory when set.
	DataDir string
	// Logs receives the server's log (nil: discarded).
	Logs io.Writer
	// RotationHook is called at each step of a disk's key re-wrap (the
	// rotate scenario makes the vault refuse half-way with it).
	RotationHook func(step string)
}

// StartEnv boots cvault in-process on 127.0.0.1 with a temporary data dir
// and signs in as its bootstrap administrator (the provider of seed 003).
func StartEnv(ctx context.Context, opts EnvOptions) (*Env, func(), error) {
	dir := opts.DataDir
	cleanup := func() {}
	if dir == "" {
		d, err := os.MkdirTemp("", "cvault-demo-")
		if err != nil {
			return nil, nil, err
		}
		dir, cleanup = d, func() { _ = os.RemoveAll(d) }
	}
	ttl := opts.DEKCacheTTL
	if ttl == 0 {
		ttl = 2 * time.Second
	}
	logs := opts.Logs
	if logs == nil {
		logs = io.Discard
	}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	a, err := app.New(ctx, app.Config{DataDir: dir, Listener: ln, URL: "https://localhost:" + port, Logger: logger, DEKCacheTTL: ttl,
		RotationHook: opts.RotationHook})
	if err != nil {
		_ = ln.Close()
		cleanup()
		return nil, nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Serve(sctx) }()
	stop := func() { cancel(); <-done; a.Close(); cleanup() }
	if a.Admin == nil {
		stop()
		return nil, nil, errors.New("demo: the data dir was already bootstrapped; use a fresh one")
	}
	env := &Env{App: a, URL: a.BaseURL.String(), HTTP: localdial.Client(a.CA.Pool()), VaultPort: port,
		VaultZone: a.Config.VaultDomain, DEKTTL: ttl}
	if env.VaultZone == "" {
		env.VaultZone = "vault.localhost"
	}
	env.Admin = Tenant{ID: a.Admin.TenantID, ClientID: a.Admin.ClientID, Secret: a.Admin.ClientSecret, ObjectID: a.Admin.ObjectID,
		Subscription: a.Bootstrap.SubscriptionID}
	if env.Admin.Cred, err = env.Credential(env.Admin.ID, env.Admin.ClientID, env.Admin.Secret); err != nil {
		stop()
		return nil, nil, err
	}
	return env, stop, nil
}

// ClientOptions point an Azure SDK client at the server.
func (e *Env) ClientOptions() azcore.ClientOptions {
	return azcore.ClientOptions{
		Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: e.URL + "/", Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Audience: e.URL, Endpoint: e.URL}}},
		Transport: e.HTTP,
	}
}

// ARMOptions are ClientOptions for arm* clients.
func (e *Env) ARMOptions() *arm.ClientOptions {
	return &arm.ClientOptions{ClientOptions: e.ClientOptions()}
}

// Credential signs in as an app with a client secret.
func (e *Env) Credential(tenant, clientID, secret string) (azcore.TokenCredential, error) {
	return azidentity.NewClientSecretCredential(tenant, clientID, secret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: e.ClientOptions(), DisableInstanceDiscovery: true})
}

// VaultURL is the URI of a vault.
func (e *Env) VaultURL(name string) string {
	return "https://" + name + "." + e.VaultZone + ":" + e.VaultPort
}

// REST sends a JSON request with a token for scope and decodes the answer;
// a status of 300 or more is an error naming the body.
func (e *Env) REST(ctx context.Context, cred azcore.TokenCredential, scope, method, url string, in, out any) error {
	tk, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
	if err != nil {
		return err
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tk.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out != nil && len(b) > 0 {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Graph calls the Graph-shaped directory as cred.
func (e *Env) Graph(ctx context.Context, cred azcore.TokenCredential, method, path string, in, out any) error {
	return e.REST(ctx, cred, "https://graph.microsoft.com/.default", method, e.URL+"/graph/v1.0"+path, in, out)
}

// ARM calls the resource manager as cred.
func (e *Env) ARM(ctx context.Context, cred azcore.TokenCredential, method, path string, in, out any) error {
	return e.REST(ctx, cred, e.URL+"/.default", method, e.URL+path, in, out)
}

// NewTenant creates a tenant (cvault's directory extension) and signs in
// as its administrator; the tenant comes with a subscription.
func (e *Env) NewTenant(ctx context.Context, name string) (Tenant, error) {
	var out struct {
		ID    string `json:"id"`
		Admin struct {
			TenantID     string `json:"tenantId"`
			ClientID     string `json:"clientId"`
			ClientSecret string `json:"clientSecret"`
			ObjectID     string `json:"objectId"`
		} `json:"admin"`
	}
	if err := e.Graph(ctx, e.Admin.Cred, "POST", "/tenants", map[string]string{"displayName": name}, &out); err != nil {
		return Tenant{}, err
	}
	t := Tenant{ID: out.ID, ClientID: out.Admin.ClientID, Secret: out.Admin.ClientSecret, ObjectID: out.Admin.ObjectID}
	var err error
	if t.Cred, err = e.Credential(t.ID, t.ClientID, t.Secret); err != nil {
		return Tenant{}, err
	}
	var subs struct {
		Value []struct {
			SubscriptionID string `json:"subscriptionId"`
		} `json:"value"`
	}
	if err := e.ARM(ctx, t.Cred, "GET", "/subscriptions?api-version=2022-12-01", nil, &subs); err != nil {
		return Tenant{}, err
	}
	if len(subs.Value) == 0 {
		return Tenant{}, errors.New("demo: the new tenant has no subscription")
	}
	t.Subscription = subs.Value[0].SubscriptionID
	return t, nil
}

// ResourceGroup creates a resource group.
func (e *Env) ResourceGroup(ctx context.Context, t Tenant, name, location string) error {
	return e.ARM(ctx, t.Cred, "PUT", "/subscriptions/"+t.Subscription+"/resourcegroups/"+name+"?api-version=2021-04-01",
		map[string]string{"location": location}, nil)
}
