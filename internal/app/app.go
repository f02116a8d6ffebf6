// Package app assembles a cvault server from its configuration: it opens
// the store, checks the root key, loads the CA and TLS certificate, fixes
// the public base URL, builds every service and its routes, and serves
// them. `cvault serve`, `cvault demo` and the in-process test server
// (cvaulttest) all start cvault through this one path.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cvault/cvault/internal/arm"
	"github.com/cvault/cvault/internal/arm/armhttp"
	"github.com/cvault/cvault/internal/attest/attesthttp"
	"github.com/cvault/cvault/internal/attest/instance"
	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/authz"
	"github.com/cvault/cvault/internal/authz/authzhttp"
	"github.com/cvault/cvault/internal/barrier"
	"github.com/cvault/cvault/internal/compute"
	"github.com/cvault/cvault/internal/compute/blockstore"
	"github.com/cvault/cvault/internal/compute/computehttp"
	"github.com/cvault/cvault/internal/compute/diskdata"
	"github.com/cvault/cvault/internal/compute/diskdata/diskhttp"
	"github.com/cvault/cvault/internal/identity"
	"github.com/cvault/cvault/internal/identity/idhttp"
	"github.com/cvault/cvault/internal/keyvault"
	"github.com/cvault/cvault/internal/keyvault/kvhttp"
	"github.com/cvault/cvault/internal/pki"
	"github.com/cvault/cvault/internal/release"
	"github.com/cvault/cvault/internal/route"
	"github.com/cvault/cvault/internal/server"
	"github.com/cvault/cvault/internal/store"
	"github.com/cvault/cvault/internal/store/embedded"
	"github.com/cvault/cvault/internal/store/postgres"
)

// Config is what `cvault serve` is given.
type Config struct {
	DataDir     string // default ./cvault-data
	Listen      string // default 127.0.0.1:8443
	Listener    net.Listener
	URL         string // public base URL; default https://localhost:<listen port>
	VaultDomain string // default vault.localhost
	// StoreURL selects the store: "" = embedded (DataDir/cvault.db),
	// postgres://… = PostgreSQL.
	StoreURL string
	// DiskBlocks is where managed-disk blocks live (--disk-blocks): "dir"
	// (sparse files in DataDir/disks) or "store" (records in the store, so
	// servers on one PostgreSQL share them); "" is "store" with PostgreSQL
	// and "dir" with the embedded store.
	DiskBlocks string
	// PostgresSchema confines a PostgreSQL store to one schema (tests).
	PostgresSchema string
	// RootKey is the barrier root key; nil means the data dir's key file,
	// generated on first start (embedded store only).
	RootKey     []byte
	TLSCertFile string
	TLSKeyFile  string
	Hostnames   []string
	// Regions are the accepted resource locations (default: arm.DefaultRegions).
	Regions []string
	Logger  *slog.Logger
	Now     func() time.Time
	// DEKCacheTTL bounds how long an unwrapped disk data key is reused
	// (--dek-cache-ttl); zero means diskdata.DefaultDEKCacheTTL.
	DEKCacheTTL time.Duration
	// Authenticator replaces the identity service's token verification;
	// tests of services that do not exercise identity use it.
	Authenticator authn.Authenticator
	// SimulatedRootsPEM are simulated SEV-SNP roots the attestation service trusts
	// (`--trust-sim-root`, from `cvault sim root`); nil refuses simulated evidence.
	SimulatedRootsPEM []byte
	// AMDKDS lets the attestation service fetch missing VCEKs and AMD's CRLs from
	// https://kdsintf.amd.com, cached in the store (--amd-kds); off verifies offline.
	// KDSClient replaces the network client (tests: a fake KDS); nil is a plain client.
	AMDKDS    bool
	KDSClient *http.Client
	// AuthorityAliases map attestation authority URLs (Azure's MAA hosts in
	// Azure's release policies) to attestation instances (--authority-alias).
	AuthorityAliases map[string]string
	// TrustedAuthorities are external MAA-compatible authorities whose tokens
	// release keys (--trusted-authority); AuthorityClient fetches their
	// metadata and keys (nil: system roots).
	TrustedAuthorities []string
	AuthorityClient    *http.Client
	// JobLease is how long a server's lease on a job (a DES key rotation)
	// lasts unrenewed before another server takes the job over (default 15 s).
	JobLease time.Duration
	// RotationHook is called at each step of a disk's re-wrap (crash tests).
	RotationHook func(step string)
	// AutoRotateEvery is the interval of automatic DES key rotation
	// (rotationToLatestKeyVersionEnabled); default 1 minute.
	AutoRotateEvery time.Duration
}

// App is a built server.
type App struct {
	Config  Config
	Store   store.Store
	Sealer  barrier.Sealer
	CA      *pki.CA
	BaseURL *url.URL
	Server  *server.Server
	TLS     *tls.Config
	// TLSFiles are the CA/cert/key paths in the data dir (when generated).
	TLSFiles  pki.ServerFiles
	Bootstrap Bootstrap
	// Admin holds the bootstrap administrator's credentials on the start
	// that created them (also written to DataDir/admin.json), else nil.
	Admin    *identity.AdminCredentials
	ARM      *arm.Service
	Authz    *authz.Service
	Identity *identity.Service
	KeyVault *keyvault.Service
	// Attestation holds the attestation instances (issuer URLs and token keys for key release).
	Attestation *instance.Service
	// Release is Secure Key Release (the vaults' release operation and audit log).
	Release *release.Service
	// DiskData is the managed-disk data service (encrypted blocks, signed URLs).
	DiskData   *diskdata.Service
	diskBlocks *blockstore.Dir
	keyring    lateKeyring
	// Compute is the Microsoft.Compute provider (DES, disks, VMs).
	Compute *compute.Service
	// RootKeyCreated reports that this start generated the root key file.
	RootKeyCreated bool
	listener       net.Listener
}

const (
	configKind = "config"
	baseURLKey = "base-url"
)

// New builds the server; it does not start listening on cfg.Listen until
// Serve, but binds it so a busy port fails here.
func New(ctx context.Context, cfg Config) (_ *App, err error) {
	if cfg.DataDir == "" {
		cfg.DataDir = "cvault-data"
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8443"
	}
	if cfg.VaultDomain == "" {
		cfg.VaultDomain = "vault.localhost"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	switch {
	case cfg.DiskBlocks == "" && cfg.StoreURL != "":
		cfg.DiskBlocks = DiskBlocksStore
	case cfg.DiskBlocks == "":
		cfg.DiskBlocks = DiskBlocksDir
	case cfg.DiskBlocks != DiskBlocksDir && cfg.DiskBlocks != DiskBlocksStore:
		return nil, fmt.Errorf("disk blocks: unsupported --disk-blocks %q (use %s or %s)", cfg.DiskBlocks, DiskBlocksDir, DiskBlocksStore)
	}
	a := &App{Config: cfg}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := a.openStore(ctx); err != nil {
		return nil, err
	}
	if err := a.openBarrier(ctx); err != nil {
		return nil, err
	}
	if a.listener = cfg.Listener; a.listener == nil {
		if a.listener, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
	}
	if err := a.fixBaseURL(ctx); err != nil {
		return nil, err
	}
	if a.CA, err = pki.LoadOrCreateCA(ctx, a.Store, a.Sealer, cfg.Now()); err != nil {
		return nil, err
	}
	if err := a.loadTLS(); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	base := a.BaseURL.String()
	var routes []route.Route

	// Resource Manager basics: subscriptions, resource groups, operations.
	armSvc, err := arm.New(arm.Config{Store: a.Store, Regions: cfg.Regions, Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	// Identity: tenants, principals, tokens; it verifies every bearer token.
	idSvc, err := identity.New(identity.Config{BaseURL: a.BaseURL, Store: a.Store, Barrier: a.Sealer,
		Logger: cfg.Logger, ARM: armSvc, Now: cfg.Now, TenantCreated: a.tenantCreated})
	if err != nil {
		return nil, err
	}
	a.Identity = idSvc
	if cfg.Authenticator == nil {
		cfg.Authenticator = idSvc
	}
	if a.Bootstrap, err = a.bootstrap(ctx, armSvc, idSvc); err != nil {
		return nil, err
	}

	// Authorization: RBAC role definitions and assignments; the bootstrap
	// admin is Owner of the bootstrap subscription. Every http package's
	// Authorizer is this service.
	if a.Authz, err = authz.New(authz.Config{Store: a.Store, Logger: cfg.Logger, Now: cfg.Now}); err != nil {
		return nil, err
	}
	if err := a.Authz.Bootstrap(ctx, a.Bootstrap.TenantID, a.Bootstrap.SubscriptionID, a.Bootstrap.AdminObjectID); err != nil {
		return nil, err
	}
	routes = append(routes, authzhttp.Routes(a.Authz)...)

	routes = append(routes, armhttp.Routes(armSvc, a.Authz, base)...)
	a.ARM = armSvc
	routes = append(routes, idhttp.Routes(idSvc, a.Authz)...)

	// Key Vault: vaults as ARM resources and the keys data plane.
	if a.KeyVault, err = keyvault.New(keyvault.Config{Store: a.Store, Sealer: a.Sealer, Resources: armSvc, Now: cfg.Now}); err != nil {
		return nil, err
	}
	armSvc.RegisterGroupDeleter(a.KeyVault)

	// Attestation: instances, with `default` created on first start.
	if a.Attestation, err = a.attestation(ctx, reg); err != nil {
		return nil, err
	}
	// Secure Key Release: served on the vault hosts, verifies the instances' tokens.
	if a.Release, err = a.newRelease(); err != nil {
		return nil, err
	}
	routes = append(routes, kvhttp.Routes(kvhttp.Config{Service: a.KeyVault, ARM: armSvc, Authorizer: a.Authz,
		BaseURL: a.BaseURL, VaultDomain: cfg.VaultDomain, Release: a.Release})...)
	routes = append(routes, attesthttp.Routes(a.Attestation, a.Authz, "/subscriptions/"+a.Bootstrap.SubscriptionID)...)

	// Managed-disk data path: encrypted block store and signed-URL routes.
	if err := a.newDiskData(ctx); err != nil {
		return nil, err
	}
	routes = append(routes, diskhttp.Routes(a.DiskData)...)
	// Compute: disk encryption sets, disks, VMs (deleted with their group
	// before vaults' keys matter: VMs, then disks, then sets).
	if a.Compute, err = a.newCompute(); err != nil {
		return nil, err
	}
	routes = append(routes, computehttp.Routes(computehttp.Config{Service: a.Compute, ARM: armSvc, Authorizer: a.Authz, BaseURL: base})...)

	a.Server, err = server.New(server.Config{
		BaseURL:       a.BaseURL,
		VaultDomain:   cfg.VaultDomain,
		Store:         a.Store,
		Logger:        cfg.Logger,
		Authenticator: cfg.Authenticator,
		VaultTenant:   a.KeyVault.VaultTenant,
		Routes:        routes,
		Registry:      reg,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

func (a *App) openStore(ctx context.Context) error {
	cfg := a.Config
	if strings.HasPrefix(cfg.StoreURL, "postgres://") || strings.HasPrefix(cfg.StoreURL, "postgresql://") {
		db, err := postgres.Open(ctx, cfg.StoreURL, postgres.Options{Schema: cfg.PostgresSchema})
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		a.Store = db
		return nil
	}
	if cfg.StoreURL != "" {
		return fmt.Errorf("store: unsupported --store %q (use postgres://… or leave empty for the embedded store)", cfg.StoreURL)
	}
	db, err := embedded.Open(filepath.Join(cfg.DataDir, "cvault.db"), embedded.Options{})
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	a.Store = db
	return nil
}

func (a *App) openBarrier(ctx context.Context) error {
	key := a.Config.RootKey
	if key == nil {
		if a.Config.StoreURL != "" {
			return errors.New("root key: a shared PostgreSQL store needs the operator's root key (CVAULT_ROOT_KEY or --root-key-file); none is generated")
		}
		k, created, err := barrier.LoadOrCreateFile(filepath.Join(a.Config.DataDir, "root.key"))
		if err != nil {
			return fmt.Errorf("root key: %w", err)
		}
		key, a.RootKeyCreated = k, created
	}
	sl, err := barrier.New(key)
	if err != nil {
		return fmt.Errorf("root key: %w", err)
	}
	if err := barrier.Check(ctx, a.Store, sl); err != nil {
		return fmt.Errorf("root key: %w", err)
	}
	a.Sealer = sl
	return nil
}

// fixBaseURL stores the public base URL on first start; later starts (of
// any server on the same store) must agree, since tokens, vault URIs and
// key ids already issued name it.
func (a *App) fixBaseURL(ctx context.Context) error {
	want := a.Config.URL
	rec, err := a.Store.Get(ctx, configKind, baseURLKey)
	switch {
	case err == nil:
		stored := string(rec.Value)
		if want != "" && normURL(want) != stored {
			return fmt.Errorf("base URL: --url %s differs from %s, which this store was started with and which issued tokens and key ids name; start with --url %s", want, stored, stored)
		}
		want = stored
	case errors.Is(err, store.ErrNotFound):
		if want == "" {
			_, port, err := net.SplitHostPort(a.listener.Addr().String())
			if err != nil {
				return fmt.Errorf("base URL: %w", err)
			}
			want = "https://localhost:" + port
		}
		want = normURL(want)
		if _, err := store.Put(ctx, a.Store, configKind, baseURLKey, []byte(want), store.Absent); err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("base URL: %w", err)
		} else if err != nil {
			return a.fixBaseURL(ctx) // another server stored one first
		}
	default:
		return fmt.Errorf("base URL: %w", err)
	}
	u, err := url.Parse(want)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("base URL %q must be https://host[:port] with no path", want)
	}
	u.Path = ""
	a.BaseURL = u
	return nil
}

func normURL(s string) string { return strings.TrimRight(strings.TrimSpace(s), "/") }

func (a *App) loadTLS() error {
	cfg := a.Config
	var cert tls.Certificate
	var err error
	if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
		cert, err = tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
	} else {
		hosts := []string{"localhost", "127.0.0.1", "::1", "*." + cfg.VaultDomain, a.BaseURL.Hostname()}
		hosts = append(hosts, cfg.Hostnames...)
		a.TLSFiles, err = pki.EnsureServerCert(a.CA, cfg.DataDir, dedupe(hosts), cfg.Now())
		if err != nil {
			return err
		}
		cert, err = tls.LoadX509KeyPair(a.TLSFiles.CertPath, a.TLSFiles.KeyPath)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
	}
	a.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	return nil
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if s != "" && !seen[strings.ToLower(s)] {
			seen[strings.ToLower(s)] = true
			out = append(out, s)
		}
	}
	return out
}

// Addr is the bound listener address.
func (a *App) Addr() net.Addr { return a.listener.Addr() }

// Serve serves HTTPS until ctx is done, then shuts down gracefully,
// letting in-flight requests finish (up to 30 s).
func (a *App) Serve(ctx context.Context) error {
	srv := &http.Server{
		Handler:           a.Server,
		TLSConfig:         a.TLS,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.Config.Logger.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(a.listener, "", "") }()
	// Key rotation policies and purge dates are honoured by a scheduler on
	// every server; each rotation or purge applies only once.
	go a.KeyVault.RunScheduler(ctx, time.Minute, func(err error) {
		a.Config.Logger.Error("key vault scheduler", "err", err)
	})
	a.serveComputeJobs(ctx)
	select {
	case err := <-errc:
		if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
			return nil // Close was called
		}
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// Close releases the store and the listener.
func (a *App) Close() error {
	var errs []error
	if a.listener != nil {
		if err := a.listener.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if a.diskBlocks != nil {
		errs = append(errs, a.diskBlocks.Close())
	}
	if a.Store != nil {
		errs = append(errs, a.Store.Close())
	}
	return errors.Join(errs...)
}
