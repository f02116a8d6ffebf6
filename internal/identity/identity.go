// Package identity is cvault's Entra-compatible directory and token service:
// tenants, app registrations with client secrets and federated identity
// credentials, service principals (an app's instance in a tenant, created by
// consent), user-assigned managed identities, per-tenant RS256 signing keys,
// and the token logic behind POST /{tenant}/oauth2/v2.0/token, the OIDC
// metadata, JWKS and the managed-identity endpoint. It also verifies the
// tokens it issues for the server (authn.Authenticator).
//
// It serves the identity halves of the seeds: a confidential VM's managed
// identity obtaining a token (seed 000) and seed 003's phase 1, where a
// provider's multi-tenant app uses a user-assigned identity's token as its
// federated credential to obtain a token in the customer's tenant.
// HTTP handlers live in identity/idhttp.
package identity

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/barrier"
	"github.com/cvault/cvault/internal/store"
)

// Store kinds owned by identity. Keys are lower-case.
const (
	kindTenant     = "idtenant"   // {tid}
	kindApp        = "idapp"      // {tid}/{appObjectId}
	kindAppID      = "idappid"    // {appId} → appIndex (appIds are global)
	kindSP         = "idsp"       // {tid}/{spObjectId}
	kindSPApp      = "idspapp"    // {tid}/{appId} → spObjectId
	kindMI         = "idmi"       // lower(resource ID)
	kindMIClient   = "idmiclient" // {clientId} → lower(resource ID)
	kindMIOwner    = "idmiowner"  // {ownerId} → miOwner (the holder of a managed-identity secret)
	kindSigningKey = "idsigkey"   // {tid}/{kid}
	kindMeta       = "idmeta"     // "bootstrap"
)

// TokenExchangeAudience is the audience of tokens used as federated assertions.
const TokenExchangeAudience = "api://AzureADTokenExchange"

// MaxFederatedCredentials is Azure's limit per application or identity.
const MaxFederatedCredentials = 20

// Sentinel errors.
var (
	// ErrNotFound: no such tenant, application, principal or identity.
	ErrNotFound = errors.New("identity: not found")
	// ErrConflict: the object exists already or changed concurrently.
	ErrConflict = errors.New("identity: conflict")
	// ErrInvalid: a request field is malformed or out of range.
	ErrInvalid = errors.New("identity: invalid request")
	// ErrForbidden: the caller may not change this directory object.
	ErrForbidden = errors.New("identity: insufficient privileges")
	// ErrUnauthorized: a managed-identity secret is missing or wrong.
	ErrUnauthorized = errors.New("identity: managed identity secret not accepted")
	// ErrSubscriptionNotFound and ErrResourceGroupNotFound: the ARM scope
	// of a user-assigned identity does not exist.
	ErrSubscriptionNotFound  = errors.New("identity: subscription not found")
	ErrResourceGroupNotFound = errors.New("identity: resource group not found")
)

// ARM is what identity needs from the resource manager (subscriptions and
// resource groups belong to package arm). Errors that are *azure.Error are
// passed to the client unchanged; store.ErrNotFound means "does not exist".
type ARM interface {
	TenantOfSubscription(ctx context.Context, subscription string) (string, error)
	ResourceGroupExists(ctx context.Context, subscription, resourceGroup string) error
}

// Config wires the service.
type Config struct {
	// BaseURL is the public base URL; issuers are BaseURL/{tenant}/v2.0.
	BaseURL *url.URL
	Store   store.Store
	Barrier barrier.Sealer
	Logger  *slog.Logger
	// ARM resolves subscriptions and resource groups for user-assigned
	// identities; nil makes those operations fail with ErrNotFound.
	ARM ARM
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Rand is the randomness source for ids, secrets and salts (default crypto/rand).
	Rand io.Reader
	// TokenLifetime of issued access tokens (default 1h, Entra's default range is 60-90 min).
	TokenLifetime time.Duration
	// NewSigningKey makes a tenant signing key (default RSA-2048 from Rand).
	NewSigningKey func() (*rsa.PrivateKey, error)
	// HTTPClient fetches external OIDC issuers' discovery documents and
	// keys for federated assertions (default: a client with a 10 s timeout).
	HTTPClient *http.Client
	// TenantCreated runs after CreateTenant commits a new tenant, so the
	// resource manager can give it a subscription its admin owns, as a new
	// Azure tenant comes with one. An error is returned to the caller; the
	// tenant stays (a retry of the hook is idempotent on the ARM side).
	TenantCreated func(ctx context.Context, t Tenant, admin AdminCredentials) error
}

// Service is the identity service.
type Service struct {
	cfg    Config
	base   string // BaseURL without trailing '/'
	keys   *keyring
	extMu  sync.Mutex
	extIss map[string]*externalIssuer
	// verified caches signature-verified tokens (see verifiedCache).
	verified *verifiedCache
}

var _ authn.Authenticator = (*Service)(nil)

// New checks cfg and returns the service.
func New(cfg Config) (*Service, error) {
	var missing []string
	if cfg.BaseURL == nil {
		missing = append(missing, "BaseURL")
	}
	if cfg.Store == nil {
		missing = append(missing, "Store")
	}
	if cfg.Barrier == nil {
		missing = append(missing, "Barrier")
	}
	if cfg.Logger == nil {
		missing = append(missing, "Logger")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("identity: missing config: %s", strings.Join(missing, ", "))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = time.Hour
	}
	if cfg.NewSigningKey == nil {
		r := cfg.Rand
		cfg.NewSigningKey = func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(r, 2048) }
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	s := &Service{cfg: cfg, base: strings.TrimRight(cfg.BaseURL.String(), "/"), extIss: map[string]*externalIssuer{},
		verified: newVerifiedCache(16384)}
	s.keys = newKeyring(s)
	return s, nil
}

// Issuer returns the v2 issuer of tenant: BASE/{tenant}/v2.0.
func (s *Service) Issuer(tenant string) string { return s.base + "/" + tenant + "/v2.0" }

// Authority returns the authority URL azidentity is given for tenant.
func (s *Service) Authority(tenant string) string { return s.base + "/" + tenant }

// BaseURL returns the public base URL without a trailing '/'.
func (s *Service) BaseURL() string { return s.base }

// newGUID returns a random (version 4) GUID in lower-case 8-4-4-4-12 form.
func (s *Service) newGUID() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(s.cfg.Rand, b[:]); err != nil {
		return "", fmt.Errorf("identity: random: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

func (s *Service) random(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.cfg.Rand, b); err != nil {
		return nil, fmt.Errorf("identity: random: %w", err)
	}
	return b, nil
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }
