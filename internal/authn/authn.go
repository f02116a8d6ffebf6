// Package authn holds who is calling: the authenticated Principal that the
// server puts in a request's context after verifying its bearer token,
// and the Authenticator interface the identity service implements.
// authz decides what a Principal may do; identity decides who it is.
package authn

import (
	"context"
	"errors"
	"time"
)

// PrincipalType is Azure's principalType for role assignments.
type PrincipalType string

const (
	ServicePrincipal PrincipalType = "ServicePrincipal"
	// ManagedIdentity principals are service principals in Azure's RBAC
	// (principalType ServicePrincipal); the distinction is kept for tokens (xms_mirid).
	ManagedIdentity PrincipalType = "ManagedIdentity"
	User            PrincipalType = "User"
)

// Principal is an authenticated caller.
type Principal struct {
	TenantID string        // tid
	ObjectID string        // oid: the service principal / managed identity / user object
	AppID    string        // appid/azp: the client (application) id
	Type     PrincipalType // what ObjectID is
	// MIResourceID is the ARM ID of a managed identity (xms_mirid), "" otherwise.
	MIResourceID string
	Audience     string    // the aud the token was accepted for
	Issuer       string    // iss
	TokenID      string    // uti/jti, for audit
	Expires      time.Time // exp
}

type ctxKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the request's principal, if authenticated.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(*Principal)
	return p, ok && p != nil
}

var (
	// ErrNoToken: the request carries no bearer token (answered with a challenge).
	ErrNoToken = errors.New("authn: no bearer token")
	// ErrInvalidToken: the token is malformed, unsigned by a known key, expired,
	// not yet valid, or for another audience or issuer.
	ErrInvalidToken = errors.New("authn: invalid token")
	// ErrExpired: the token's exp has passed (wrapped with ErrInvalidToken's meaning).
	ErrExpired = errors.New("authn: token expired")
	// ErrAudience: the token is valid but for another audience.
	ErrAudience = errors.New("authn: token audience not accepted here")
)

// Authenticator verifies a bearer token for one of the audiences the
// called service accepts.
type Authenticator interface {
	Authenticate(ctx context.Context, token string, audiences []string) (*Principal, error)
}
