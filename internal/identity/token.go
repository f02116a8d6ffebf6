package identity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/cvault/cvault/internal/authn"
)

// clockSkew is tolerated on exp and nbf of tokens and assertions.
const clockSkew = time.Minute

// maxTokenSize bounds what the parser looks at (Entra's tokens are a few KiB).
const maxTokenSize = 16 << 10

// signatureAlgorithms is the allow-list for every token cvault verifies.
var signatureAlgorithms = []jose.SignatureAlgorithm{jose.RS256}

// Claims are the access-token claims, named as Entra names them
// (design.md §4; wire/identity-rbac-compute.md §1.5). Tokens are v2-shaped
// (iss BASE/{tid}/v2.0) and also carry the v1 names appid/appidacr, which
// some resource servers read.
type Claims struct {
	Audience     jwt.Audience     `json:"aud"`
	Issuer       string           `json:"iss"`
	IssuedAt     *jwt.NumericDate `json:"iat,omitempty"`
	NotBefore    *jwt.NumericDate `json:"nbf,omitempty"`
	Expiry       *jwt.NumericDate `json:"exp,omitempty"`
	TenantID     string           `json:"tid,omitempty"`
	ObjectID     string           `json:"oid,omitempty"`
	Subject      string           `json:"sub"`
	AzP          string           `json:"azp,omitempty"`
	AppID        string           `json:"appid,omitempty"`
	AzPACR       string           `json:"azpacr,omitempty"`
	AppIDACR     string           `json:"appidacr,omitempty"`
	IDType       string           `json:"idtyp,omitempty"`
	Version      string           `json:"ver,omitempty"`
	TokenID      string           `json:"uti,omitempty"`
	MIResourceID string           `json:"xms_mirid,omitempty"`
}

// Token is an issued access token.
type Token struct {
	AccessToken string
	NotBefore   time.Time
	ExpiresOn   time.Time
	Lifetime    time.Duration
	Resource    string
	ClientID    string
}

// String and LogValue keep the token out of logs.
func (t *Token) String() string { return "Token{REDACTED}" }

// LogValue implements slog.LogValuer.
func (t *Token) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// issue signs c with the tenant's current key, filling the time and id claims.
func (s *Service) issue(ctx context.Context, tenant string, c Claims) (*Token, error) {
	tk, err := s.keys.get(ctx, tenant, false)
	if err != nil {
		return nil, err
	}
	now := s.now()
	uti, err := s.random(16)
	if err != nil {
		return nil, err
	}
	exp := now.Add(s.cfg.TokenLifetime)
	// Entra back-dates nbf/iat by five minutes to absorb client clock skew.
	nbf := now.Add(-5 * time.Minute)
	c.Issuer = s.Issuer(tenant)
	c.TenantID = tenant
	c.IssuedAt, c.NotBefore, c.Expiry = jwt.NewNumericDate(nbf), jwt.NewNumericDate(nbf), jwt.NewNumericDate(exp)
	c.IDType, c.Version = "app", "2.0"
	c.TokenID = base64.RawURLEncoding.EncodeToString(uti)
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("identity: encode claims: %w", err)
	}
	jws, err := tk.signer.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("identity: sign token: %w", err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		return nil, fmt.Errorf("identity: serialize token: %w", err)
	}
	res := ""
	if len(c.Audience) > 0 {
		res = c.Audience[0]
	}
	return &Token{AccessToken: raw, NotBefore: nbf, ExpiresOn: time.Unix(exp.Unix(), 0).UTC(),
		Lifetime: s.cfg.TokenLifetime, Resource: res, ClientID: c.AzP}, nil
}

// ParseToken parses a compact JWS (RS256 only) and returns it with its
// claims, unverified. Callers verify with the issuer's key before trusting
// anything in it.
func ParseToken(raw string) (*jwt.JSONWebToken, Claims, error) {
	var c Claims
	if len(raw) > maxTokenSize {
		return nil, c, errors.New("token too large")
	}
	tok, err := jwt.ParseSigned(raw, signatureAlgorithms)
	if err != nil {
		return nil, c, fmt.Errorf("parse token: %w", err)
	}
	if len(tok.Headers) != 1 {
		return nil, c, errors.New("token must have exactly one signature")
	}
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return nil, c, fmt.Errorf("parse token claims: %w", err)
	}
	return tok, c, nil
}

// localTenant returns the tenant of a cvault issuer (BASE/{tid}/v2.0).
func (s *Service) localTenant(iss string) (string, bool) {
	rest, ok := strings.CutPrefix(iss, s.base+"/")
	if !ok {
		return "", false
	}
	tid, ok := strings.CutSuffix(rest, "/v2.0")
	if !ok || !isGUID(tid) || tid != strings.ToLower(tid) {
		return "", false
	}
	return tid, true
}

// verifyLocal checks a cvault-issued token's signature against its
// tenant's keys and its issuer; times are checked by the caller.
func (s *Service) verifyLocal(ctx context.Context, tok *jwt.JSONWebToken, c *Claims) error {
	tid, ok := s.localTenant(c.Issuer)
	if !ok || (c.TenantID != "" && c.TenantID != tid) {
		return fmt.Errorf("%w: issuer is not a cvault tenant", authn.ErrInvalidToken)
	}
	pub, err := s.publicKey(ctx, tid, tok.Headers[0].KeyID)
	if errors.Is(err, ErrNotFound) || errors.Is(err, errUnknownKey) {
		return fmt.Errorf("%w: %w", authn.ErrInvalidToken, err)
	}
	if err != nil {
		return err
	}
	var verified Claims
	if err := tok.Claims(pub, &verified); err != nil {
		return fmt.Errorf("%w: signature: %v", authn.ErrInvalidToken, err)
	}
	*c = verified
	return nil
}

// Authenticate verifies a bearer token issued by cvault: RS256 signature by
// a published key of the token's tenant, issuer BASE/{tid}/v2.0, an
// audience in audiences, and exp/nbf within clockSkew.
func (s *Service) Authenticate(ctx context.Context, raw string, audiences []string) (*authn.Principal, error) {
	c, h, cached := s.verified.get(raw)
	if !cached {
		tok, parsed, err := ParseToken(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", authn.ErrInvalidToken, err)
		}
		if err := s.verifyLocal(ctx, tok, &parsed); err != nil {
			return nil, err
		}
		c = parsed
		s.verified.put(h, c, s.now())
	}
	now := s.now()
	if c.Expiry == nil || !now.Before(c.Expiry.Time().Add(clockSkew)) {
		return nil, fmt.Errorf("%w: %w", authn.ErrInvalidToken, authn.ErrExpired)
	}
	if c.NotBefore != nil && now.Add(clockSkew).Before(c.NotBefore.Time()) {
		return nil, fmt.Errorf("%w: token not yet valid", authn.ErrInvalidToken)
	}
	aud := ""
	for _, a := range c.Audience {
		if slices.Contains(audiences, a) {
			aud = a
			break
		}
	}
	if aud == "" {
		return nil, fmt.Errorf("%w: %w", authn.ErrInvalidToken, authn.ErrAudience)
	}
	if c.ObjectID == "" || c.TenantID == "" {
		return nil, fmt.Errorf("%w: oid and tid are required", authn.ErrInvalidToken)
	}
	p := &authn.Principal{TenantID: c.TenantID, ObjectID: c.ObjectID, AppID: c.AzP, Type: authn.ServicePrincipal,
		MIResourceID: c.MIResourceID, Audience: aud, Issuer: c.Issuer, TokenID: c.TokenID, Expires: c.Expiry.Time()}
	if p.AppID == "" {
		p.AppID = c.AppID
	}
	if c.MIResourceID != "" {
		p.Type = authn.ManagedIdentity
	}
	return p, nil
}
