// Package route holds the description of an HTTP route that every service's
// HTTP package hands to the server: its method and path pattern, whether it
// lives on the main host or a vault host, who may call it (public, secret
// or bearer), which audience group it belongs to and which api-versions it
// takes. The server builds routing, authentication, api-version checks,
// logging and metrics from these descriptions, and the authorization
// matrix test walks the same table.
package route

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/cvault/cvault/internal/azure"
)

// Auth says how a route's caller is authenticated.
type Auth int

const (
	// Bearer routes need a token from cvault's token service for the route's service audience.
	Bearer Auth = iota
	// Public routes need nothing (token, OIDC, JWKS, attestation, health).
	Public
	// Secret routes authenticate with a secret of their own (managed-identity
	// endpoint header, signed disk URLs); the handler checks it.
	Secret
)

func (a Auth) String() string {
	switch a {
	case Public:
		return "public"
	case Secret:
		return "secret"
	}
	return "bearer"
}

// Host says which host a route is served on.
type Host int

const (
	// Main is the server's base URL host.
	Main Host = iota
	// Vault is {vault}.{vault-domain} (and the path alias /vaults/{vault}/…).
	Vault
)

// Service names an audience group (design.md §2, "Token audiences").
type Service string

const (
	ARM         Service = "arm"
	Graph       Service = "graph"
	KeyVault    Service = "keyvault"
	Identity    Service = "identity"
	Attestation Service = "attestation"
	Health      Service = "health"
	Disk        Service = "disk"
)

// HandlerFunc handles a request; a returned error is rendered once, at the
// edge, as Azure's error envelope (azure.WriteError).
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Route is one method + path pattern. Pattern segments are literals
// (matched case-insensitively, as ARM matches them) or {wildcards}
// (read with r.PathValue); literals win over wildcards.
type Route struct {
	Method      string
	Pattern     string
	Host        Host
	Auth        Auth
	Service     Service
	APIVersions azure.APIVersions // empty: no api-version required
	Handler     HandlerFunc
}

// Name is the route's label in logs and metrics.
func (r Route) Name() string { return r.Method + " " + r.Pattern }

type vaultKey struct{}

// WithVault records the vault a vault-host request addresses.
func WithVault(ctx context.Context, vault string) context.Context {
	return context.WithValue(ctx, vaultKey{}, vault)
}

// VaultName returns the vault name of a vault-host request ("" on the main host).
func VaultName(ctx context.Context) string {
	v, _ := ctx.Value(vaultKey{}).(string)
	return v
}

// logAttrs collects attributes handlers add to the request's access line.
type logAttrs struct {
	attrs []slog.Attr
	buf   [8]slog.Attr // room for a data-plane request's attributes without growing
}

type logKey struct{}

// WithLogAttrs prepares ctx to collect access-log attributes (server only).
func WithLogAttrs(ctx context.Context) context.Context {
	l := &logAttrs{}
	l.attrs = l.buf[:0]
	return context.WithValue(ctx, logKey{}, l)
}

// AddLogAttrs adds domain attributes (vault, key, version …) to the
// request's one access-log line, instead of logging a line of their own.
func AddLogAttrs(ctx context.Context, attrs ...slog.Attr) {
	if l, ok := ctx.Value(logKey{}).(*logAttrs); ok {
		l.attrs = append(l.attrs, attrs...)
	}
}

// LogAttrs returns what handlers added.
func LogAttrs(ctx context.Context) []slog.Attr {
	if l, ok := ctx.Value(logKey{}).(*logAttrs); ok {
		return l.attrs
	}
	return nil
}
