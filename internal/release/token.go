package release

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Token is a verified attestation token.
type Token struct {
	Issuer string
	// Instance is the cvault attestation instance that issued it ("" for an
	// external authority).
	Instance string
	Claims   map[string]any // numbers as json.Number
	JTI      string
	Expires  time.Time
}

// maxTarget bounds the token a release accepts (MAA tokens are a few KiB).
const maxTarget = 64 << 10

// verifyTarget verifies an attestation token: its issuer must be one of this
// server's instances (directly or through an alias), or a trusted external
// authority; its RS256 signature must verify with the authority's key named
// by the header kid; exp must be in the future and nbf (if any) past. On a
// verification failure after parsing, the returned Token still carries the
// unverified claims for the audit log.
func (s *Service) verifyTarget(ctx context.Context, target string) (*Token, error) {
	if len(target) > maxTarget {
		return nil, errf(ErrBadRequest, "The target attestation token is larger than %d bytes.", maxTarget)
	}
	sig, err := jose.ParseSignedCompact(target, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(sig.Signatures) != 1 {
		return nil, errf(ErrBadRequest, "The target is not an RS256 attestation token (compact JWS).")
	}
	claims, err := decodeClaims(sig.UnsafePayloadWithoutVerification())
	if err != nil {
		return nil, errf(ErrBadRequest, "The target attestation token's payload is not a JSON object.")
	}
	tok := &Token{Claims: claims}
	tok.Issuer, _ = claims["iss"].(string)
	tok.JTI, _ = claims["jti"].(string)
	if tok.Issuer == "" {
		return tok, errf(ErrUnverifiable, "Target environment attestation statement cannot be verified: the token has no issuer (iss).")
	}
	kid := sig.Signatures[0].Header.KeyID
	var keys map[string]*rsa.PublicKey
	if inst, ok := s.instanceOf(tok.Issuer); ok {
		tok.Instance = inst
		keys, err = s.cfg.Instances.TokenKeys(ctx, inst)
		if err != nil {
			return tok, errf(ErrUnverifiable, "Target environment attestation statement cannot be verified: attestation instance %s: %v", inst, err)
		}
	} else if s.external.trusted(tok.Issuer) {
		keys, err = s.external.keys(ctx, tok.Issuer, kid)
		if err != nil {
			return tok, errf(ErrUnverifiable, "Target environment attestation statement cannot be verified: authority %s: %v", tok.Issuer, err)
		}
	} else {
		return tok, errf(ErrUntrustedAuthority, "Target environment attestation statement cannot be verified: the authority %s is not trusted by this server (trust it with --trusted-authority, or map it to an attestation instance with --authority-alias URL=INSTANCE).", tok.Issuer)
	}
	key := keys[kid]
	if key == nil {
		return tok, errf(ErrUnverifiable, "Target environment attestation statement cannot be verified: authority %s has no signing key %q.", tok.Issuer, kid)
	}
	if _, err := sig.Verify(key); err != nil {
		return tok, errf(ErrUnverifiable, "Target environment attestation statement cannot be verified: the signature does not verify with key %q of %s.", kid, tok.Issuer)
	}
	now := s.cfg.Now()
	exp, ok := unixClaim(claims["exp"])
	if !ok {
		return tok, errf(ErrUnverifiable, "Target environment attestation statement cannot be verified: the token has no expiry (exp).")
	}
	tok.Expires = time.Unix(exp, 0)
	if !now.Before(tok.Expires.Add(s.cfg.Leeway)) {
		return tok, errf(ErrUnverifiable, "Target environment attestation statement cannot be verified: the token expired at %s.", tok.Expires.UTC().Format(time.RFC3339))
	}
	if nbf, ok := unixClaim(claims["nbf"]); ok && now.Add(s.cfg.Leeway).Before(time.Unix(nbf, 0)) {
		return tok, errf(ErrUnverifiable, "Target environment attestation statement cannot be verified: the token is not valid before %s.", time.Unix(nbf, 0).UTC().Format(time.RFC3339))
	}
	return tok, nil
}

// instanceOf resolves an issuer to one of this server's instances, directly
// or through an alias.
func (s *Service) instanceOf(iss string) (string, bool) {
	if inst, ok := s.cfg.Instances.InstanceName(iss); ok {
		return inst, true
	}
	inst, ok := s.aliases[normAuthority(iss)]
	return inst, ok
}

func decodeClaims(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("null payload")
	}
	return m, nil
}

func unixClaim(v any) (int64, bool) {
	switch n := v.(type) {
	case json.Number:
		if i, err := n.Int64(); err == nil {
			return i, true
		}
		if f, err := n.Float64(); err == nil {
			return int64(f), true
		}
	case float64:
		return int64(n), true
	}
	return 0, false
}

// externalKeys fetches and caches external authorities' token keys through
// their OpenID metadata (jwks_uri) and JWKS. An unknown kid refetches, at
// most once a minute per authority, so a rotated key is picked up.
type externalKeys struct {
	client  *http.Client
	now     func() time.Time
	trust   map[string]string // normalized → as configured
	mu      sync.Mutex
	entries map[string]*jwksEntry
}

type jwksEntry struct {
	keys    map[string]*rsa.PublicKey
	fetched time.Time
}

const (
	jwksTTL       = 10 * time.Minute
	jwksMinReload = time.Minute
)

func newExternalKeys(c *http.Client, trusted []string, now func() time.Time) *externalKeys {
	e := &externalKeys{client: c, now: now, trust: map[string]string{}, entries: map[string]*jwksEntry{}}
	for _, u := range trusted {
		e.trust[normAuthority(u)] = strings.TrimRight(u, "/")
	}
	return e
}

func (e *externalKeys) trusted(iss string) bool {
	_, ok := e.trust[normAuthority(iss)]
	return ok
}

func (e *externalKeys) keys(ctx context.Context, iss, kid string) (map[string]*rsa.PublicKey, error) {
	n := normAuthority(iss)
	now := e.now()
	e.mu.Lock()
	ent := e.entries[n]
	e.mu.Unlock()
	if ent != nil {
		age := now.Sub(ent.fetched)
		if age < jwksTTL && (ent.keys[kid] != nil || age < jwksMinReload) {
			return ent.keys, nil
		}
	}
	keys, err := e.fetch(ctx, e.trust[n])
	if err != nil {
		if ent != nil {
			return ent.keys, nil // keep serving what verified before
		}
		return nil, err
	}
	e.mu.Lock()
	e.entries[n] = &jwksEntry{keys: keys, fetched: now}
	e.mu.Unlock()
	return keys, nil
}

func (e *externalKeys) fetch(ctx context.Context, base string) (map[string]*rsa.PublicKey, error) {
	var meta struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := e.get(ctx, base+"/.well-known/openid-configuration", &meta); err != nil {
		return nil, fmt.Errorf("OpenID metadata: %w", err)
	}
	if meta.JWKSURI == "" {
		return nil, fmt.Errorf("OpenID metadata names no jwks_uri")
	}
	if meta.Issuer != "" && normAuthority(meta.Issuer) != normAuthority(base) {
		return nil, fmt.Errorf("OpenID metadata names issuer %s", meta.Issuer)
	}
	var set jose.JSONWebKeySet
	if err := e.get(ctx, meta.JWKSURI, &set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	out := map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		if pub, ok := k.Key.(*rsa.PublicKey); ok && k.KeyID != "" {
			out[k.KeyID] = pub
		}
	}
	return out, nil
}

func (e *externalKeys) get(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, res.Status)
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
