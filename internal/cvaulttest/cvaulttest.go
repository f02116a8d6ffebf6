// Package cvaulttest starts the real cvault server in-process for tests:
// the same app wiring as `cvault serve`, on 127.0.0.1:0 over TLS with a
// throwaway data dir (embedded store) or a fresh PostgreSQL schema, and
// hands back what a client needs — URL, CA pool and an HTTP client that
// trusts the CA and dials loopback for *.localhost vault hosts.
package cvaulttest

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/cvault/cvault/internal/app"
	"github.com/cvault/cvault/internal/localdial"
	"github.com/cvault/cvault/internal/store/postgres/pgtest"
)

// Server is a running in-process cvault.
type Server struct {
	URL        string // https://localhost:PORT
	BaseURL    *url.URL
	CAPool     *x509.CertPool
	HTTPClient *http.Client
	App        *app.App
	Config     app.Config
	// Admin is the bootstrap administrator (empty when this server joined a
	// store another server bootstrapped).
	Admin Admin
}

// Admin are the bootstrap administrator's client credentials.
type Admin struct {
	TenantID, ClientID, Secret string
}

// ClientOptions configures an Azure SDK client for this server: its
// authority host, ARM endpoint and audience, and the CA-trusting transport.
func (s *Server) ClientOptions() azcore.ClientOptions {
	return azcore.ClientOptions{
		Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: s.URL + "/", Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Audience: s.URL, Endpoint: s.URL}}},
		Transport: s.HTTPClient,
	}
}

// Credential returns an azidentity ClientSecretCredential of the bootstrap
// administrator, configured for this server.
func (s *Server) Credential(t testing.TB) *azidentity.ClientSecretCredential {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(s.Admin.TenantID, s.Admin.ClientID, s.Admin.Secret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: s.ClientOptions(), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatalf("cvaulttest: credential: %v", err)
	}
	return cred
}

// VaultURL is the vault URI of a vault name on this server.
func (s *Server) VaultURL(vault string) string {
	return "https://" + vault + "." + s.Config.VaultDomain + ":" + s.BaseURL.Port()
}

// Option adjusts the app configuration before start.
type Option func(*app.Config)

// WithConfig applies fn to the configuration (store URL, root key, clock …).
func WithConfig(fn func(*app.Config)) Option { return Option(fn) }

// Start boots cvault and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cvaulttest: listen: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	cfg := app.Config{
		DataDir:  t.TempDir(),
		Listener: ln,
		URL:      "https://localhost:" + strconv.Itoa(port),
		Logger:   TestLogger(t),
	}
	for _, o := range opts {
		o(&cfg)
	}
	return StartConfig(t, cfg)
}

// StartConfig boots cvault with a complete configuration (Listener and URL set).
func StartConfig(t testing.TB, cfg app.Config) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("cvaulttest: start: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("cvaulttest: serve: %v", err)
		}
		a.Close()
	})
	pool := a.CA.Pool()
	s := &Server{
		URL:        a.BaseURL.String(),
		BaseURL:    a.BaseURL,
		CAPool:     pool,
		HTTPClient: localdial.Client(pool),
		App:        a,
		Config:     a.Config,
	}
	t.Cleanup(s.HTTPClient.CloseIdleConnections)
	admin := a.Admin
	if admin == nil {
		admin, _ = app.ReadAdminFile(cfg.DataDir) // absent when another server bootstrapped the store
	}
	if admin != nil {
		s.Admin = Admin{TenantID: admin.TenantID, ClientID: admin.ClientID, Secret: admin.ClientSecret}
	}
	return s
}

// TestLogger logs to t.Log until the test's cleanup starts (a log line
// after a test ends would panic).
func TestLogger(t testing.TB) *slog.Logger {
	if _, bench := t.(*testing.B); bench {
		// Benchmarks still format every access line, as a server writing
		// to stderr does, but don't pay for t.Log's locking and buffering.
		return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testWriter sends server logs to t.Log until the test ends.
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// WithPostgres runs the server on the test PostgreSQL database in a fresh
// schema (skipped locally when PostgreSQL is down, failed under CI), with a
// random root key. Use Postgres(t) to share one schema between servers.
func WithPostgres(t testing.TB) Option {
	pg := Postgres(t)
	return func(c *app.Config) { c.StoreURL, c.PostgresSchema, c.RootKey = pg.URL, pg.Schema, pg.RootKey }
}

// PG is a PostgreSQL schema and root key that several servers can share.
type PG struct {
	URL, Schema string
	RootKey     []byte
}

// Postgres creates a fresh schema and root key.
func Postgres(t testing.TB) PG {
	t.Helper()
	url := pgtest.URL(t)
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return PG{URL: url, Schema: pgtest.NewSchema(t, url), RootKey: key}
}

// Option applies the shared schema to a server's configuration.
func (pg PG) Option() Option {
	return func(c *app.Config) { c.StoreURL, c.PostgresSchema, c.RootKey = pg.URL, pg.Schema, pg.RootKey }
}
