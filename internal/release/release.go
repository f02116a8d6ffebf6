// Package release is Key Vault's Secure Key Release operation (seeds 000 and
// 001, design §5): given an exportable key version and an attestation token
// (`target`), it verifies the token against the authority that issued it
// (one of cvault's attestation instances, an Azure MAA host the operator
// aliased to one, or an external MAA-compatible authority the operator
// trusts), evaluates the key's release policy on the token's claims, wraps
// the private key to the RSA key in the token's top-level x-ms-runtime.keys
// (key_hsm, wire §2.4) and returns the JWS Key Vault answers (wire §2.2-2.3),
// signed RS256 by the vault's signing certificate, which cvault's CA issues
// for the vault host. Every attempt, allowed or refused, is appended to an
// audit log in the store; keys tagged cvault-release-single-use=true accept
// each token (its jti) once, across servers.
//
// Authorization (the `release` permission or the Crypto Service Release User
// role) is the HTTP layer's, as for every data-plane operation; it reports
// refusals here with Record so the audit log holds them too.
package release

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cvault/cvault/internal/barrier"
	"github.com/cvault/cvault/internal/jwk"
	"github.com/cvault/cvault/internal/keyvault"
	"github.com/cvault/cvault/internal/keywrap"
	"github.com/cvault/cvault/internal/pki"
	"github.com/cvault/cvault/internal/release/policy"
	"github.com/cvault/cvault/internal/store"
)

// Store kinds owned by this package.
const (
	KindSigner = "release.signer" // lower(vault) → signerRecord (sealed key + certificate)
	KindJTI    = "release.jti"    // vault/lower(key)/hex(SHA-256(iss|jti)) → usedToken
	KindAudit  = "release.audit"  // vault/lower(key)/{unix nanos}-{random} → AuditEntry
)

// TagSingleUse on a key (value "true") makes each attestation token release it
// at most once. Azure has no such replay protection; it is off by default.
const TagSingleUse = "cvault-release-single-use"

// Sentinel errors. Release wraps them with a message the caller may see.
var (
	// ErrBadRequest: the request is malformed (no target, unknown enc, a target
	// that is not a JWT, no usable RSA key in the token).
	ErrBadRequest = errors.New("release: bad request")
	// ErrNotExportable: the key is not exportable or has no release policy.
	ErrNotExportable = errors.New("release: key not exportable")
	// ErrUnverifiable: the target's signature, authority or lifetime does not verify.
	ErrUnverifiable = errors.New("release: attestation token cannot be verified")
	// ErrUntrustedAuthority: the token's issuer is no authority this server trusts.
	ErrUntrustedAuthority = errors.New("release: untrusted attestation authority")
	// ErrPolicy: the token's claims do not satisfy the key's release policy.
	ErrPolicy = errors.New("release: release policy not satisfied")
	// ErrReplay: a single-use key saw this token before.
	ErrReplay = errors.New("release: attestation token already used")
)

// Error is a refusal with the message the client sees.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

func errf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Keys is what release needs of the key vault: the version and its private
// key (implemented by *keyvault.Service).
type Keys interface {
	Key(ctx context.Context, vault *keyvault.Vault, name, version string) (*keyvault.Version, error)
	PrivateKey(v *keyvault.Version) (*jwk.PrivateKey, error)
}

// Instances is what release needs of cvault's attestation service: issuer
// URLs of its instances and their token-verification keys by kid.
type Instances interface {
	InstanceName(issuer string) (string, bool)
	Issuer(name string) string
	TokenKeys(ctx context.Context, name string) (map[string]*rsa.PublicKey, error)
}

// Config configures the Service.
type Config struct {
	Store     store.Store
	Sealer    barrier.Sealer
	CA        *pki.CA
	Keys      Keys
	Instances Instances
	// Aliases map authority URLs (Azure's MAA hosts in Azure's policies) to
	// instance names: a policy naming such a URL accepts that instance's tokens.
	Aliases map[string]string
	// Trusted are external MAA-compatible authorities (issuer URLs) whose
	// keys are fetched through their OpenID metadata and JWKS.
	Trusted []string
	// HTTPClient fetches external authorities' metadata (default: a client
	// with a 10 s timeout).
	HTTPClient *http.Client
	// Leeway tolerates clock skew on the token's exp and nbf (default 1 min).
	Leeway time.Duration
	Now    func() time.Time
	Rand   io.Reader
}

// Service performs releases.
type Service struct {
	cfg      Config
	aliases  map[string]string // normalized URL → instance
	external *externalKeys

	mu       sync.Mutex
	signers  map[string]*signer // vault store key → signer
	policies map[string]*policy.Policy
}

// New builds the service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Sealer == nil || cfg.CA == nil || cfg.Keys == nil || cfg.Instances == nil {
		return nil, errors.New("release: Store, Sealer, CA, Keys and Instances are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = time.Minute
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	s := &Service{cfg: cfg, aliases: map[string]string{}, signers: map[string]*signer{}, policies: map[string]*policy.Policy{}}
	for u, inst := range cfg.Aliases {
		s.aliases[normAuthority(u)] = strings.ToLower(inst)
	}
	s.external = newExternalKeys(cfg.HTTPClient, cfg.Trusted, cfg.Now)
	return s, nil
}

// normAuthority folds an authority URL for map lookups: case-insensitive,
// trailing slashes dropped (policies and MAA issuers mix both forms).
func normAuthority(u string) string {
	return strings.ToLower(strings.TrimRight(strings.TrimSpace(u), "/"))
}

// Caller is who asked, for the audit log.
type Caller struct {
	TenantID string `json:"tenantId,omitempty"`
	ObjectID string `json:"objectId,omitempty"`
	AppID    string `json:"appId,omitempty"`
}

// Request is one release call, already authorized.
type Request struct {
	Vault *keyvault.Vault
	// VaultURI is https://{vault host}[:port]: the signing certificate names its host.
	VaultURI string
	Name     string
	Version  string // "" = the current version
	// RequestKID is the key URL as requested (echoed in the JWS's request.kid).
	RequestKID string
	APIVersion string
	Target     string
	Nonce      string
	Enc        string // "" = CKM_RSA_AES_KEY_WRAP
	Caller     Caller
	// Bundle renders the released key bundle as Key Vault's KeyBundle JSON
	// value: the version's public JWK with keyHSM as key_hsm, its attributes,
	// tags and release policy (the HTTP layer owns that shape).
	Bundle func(v *keyvault.Version, keyHSM []byte) any
}

// Result is a successful release.
type Result struct {
	Value   string // the compact JWS
	Version string
}

// Release verifies the request's target, evaluates the key's policy and
// returns the signed, wrapped key. Whatever the outcome, one audit entry is
// written (a successful release fails if its entry cannot be).
func (s *Service) Release(ctx context.Context, req Request) (*Result, error) {
	entry := AuditEntry{Vault: req.Vault.Name, Key: req.Name, Version: req.Version, Caller: req.Caller}
	res, err := s.release(ctx, req, &entry)
	if err != nil {
		entry.Decision, entry.Reason = DecisionRefused, err.Error()
		if rerr := s.Record(ctx, entry); rerr != nil {
			return nil, errors.Join(err, rerr)
		}
		return nil, err
	}
	return res, nil
}

func (s *Service) release(ctx context.Context, req Request, entry *AuditEntry) (*Result, error) {
	enc := req.Enc
	if enc == "" {
		enc = keywrap.EncDefault
	}
	switch enc {
	case keywrap.EncCKMRSAAESKeyWrap, keywrap.EncRSAAESKeyWrap256, keywrap.EncRSAAESKeyWrap384:
	default:
		return nil, errf(ErrBadRequest, "The enc '%s' is not supported; use CKM_RSA_AES_KEY_WRAP, RSA_AES_KEY_WRAP_256 or RSA_AES_KEY_WRAP_384.", req.Enc)
	}
	if req.Target == "" {
		return nil, errf(ErrBadRequest, "The target attestation token is required.")
	}
	v, err := s.cfg.Keys.Key(ctx, req.Vault, req.Name, req.Version)
	if err != nil {
		return nil, err
	}
	entry.Version = v.Version
	if err := s.usable(v); err != nil {
		return nil, err
	}
	if !v.Attributes.Exportable || v.ReleasePolicy == nil {
		return nil, errf(ErrNotExportable, "The key %s is not exportable; only exportable keys with a release policy can be released.", v.Name)
	}
	tok, err := s.verifyTarget(ctx, req.Target)
	if tok != nil {
		entry.fromToken(tok)
	}
	if err != nil {
		return nil, err
	}
	pol, err := s.policy(v.ReleasePolicy.Data)
	if err != nil {
		return nil, errf(ErrPolicy, "Target environment attestation does not meet key release policy requirements: the key's release policy does not parse: %v", err)
	}
	if err := s.evaluate(pol, tok); err != nil {
		return nil, err
	}
	rk, err := runtimeKey(tok.Claims)
	if err != nil {
		return nil, err
	}
	priv, err := s.cfg.Keys.PrivateKey(v)
	if err != nil {
		return nil, fmt.Errorf("release %s/%s: %w", v.Name, v.Version, err)
	}
	material, err := priv.Marshal()
	if err != nil {
		return nil, fmt.Errorf("release %s/%s: %w", v.Name, v.Version, err)
	}
	ct, err := keywrap.RSAAESWrap(s.cfg.Rand, rk.pub, enc, material)
	clear(material)
	if err != nil {
		return nil, fmt.Errorf("release %s/%s: wrap: %w", v.Name, v.Version, err)
	}
	keyHSM, err := keywrap.BuildKeyHSM(rk.kid, enc, ct)
	if err != nil {
		return nil, fmt.Errorf("release %s/%s: %w", v.Name, v.Version, err)
	}
	payload, err := json.Marshal(releasePayload{
		Request:  requestEcho{APIVersion: req.APIVersion, Enc: enc, KID: req.RequestKID, Nonce: req.Nonce},
		Response: responseKey{Key: req.Bundle(v, keyHSM)},
	})
	if err != nil {
		return nil, fmt.Errorf("release %s/%s: payload: %w", v.Name, v.Version, err)
	}
	sg, err := s.signer(ctx, req.Vault, req.VaultURI)
	if err != nil {
		return nil, err
	}
	jws, err := sg.sign(payload)
	if err != nil {
		return nil, err
	}
	entry.Decision, entry.Reason = DecisionAllowed, "released to runtime key "+rk.kid
	singleUse := strings.EqualFold(v.Tags[TagSingleUse], "true")
	if singleUse && tok.JTI == "" {
		return nil, errf(ErrUnverifiable, "Target environment attestation statement cannot be verified: the key is single-use (tag %s) and the token has no jti.", TagSingleUse)
	}
	if err := s.commit(ctx, *entry, singleUse, tok); err != nil {
		return nil, err
	}
	return &Result{Value: jws, Version: v.Version}, nil
}

// usable checks enabled, nbf and exp as every key operation does.
func (s *Service) usable(v *keyvault.Version) error {
	now := s.cfg.Now().Unix()
	switch a := v.Attributes; {
	case !a.Enabled:
		return &keyvault.Error{Kind: keyvault.ErrKeyDisabled, Msg: "Operation release is not allowed on a disabled key."}
	case a.NotBefore != nil && now < *a.NotBefore:
		return &keyvault.Error{Kind: keyvault.ErrKeyNotYetValid, Msg: "Operation release is not allowed on a key that is not yet valid."}
	case a.Expires != nil && now >= *a.Expires:
		return &keyvault.Error{Kind: keyvault.ErrKeyExpired, Msg: "Operation release is not allowed on an expired key."}
	}
	return nil
}

// policy parses a stored policy once; stored policies were validated at
// create time, so a failure here means a record changed underneath.
func (s *Service) policy(data []byte) (*policy.Policy, error) {
	s.mu.Lock()
	p := s.policies[string(data)]
	s.mu.Unlock()
	if p != nil {
		return p, nil
	}
	p, err := policy.Parse(data)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if len(s.policies) >= 1024 {
		clear(s.policies)
	}
	s.policies[string(data)] = p
	s.mu.Unlock()
	return p, nil
}

// evaluate applies the policy under every name the token's authority has:
// its issuer, and the aliased URLs that map to its instance.
func (s *Service) evaluate(p *policy.Policy, tok *Token) error {
	names := []string{tok.Issuer}
	if tok.Instance != "" {
		for u, inst := range s.aliases {
			if inst == tok.Instance {
				names = append(names, u)
			}
		}
	}
	var notSatisfied, noAuthority error
	for _, n := range names {
		_, err := p.Evaluate(n, tok.Claims)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, policy.ErrNotSatisfied):
			notSatisfied = err
		case noAuthority == nil:
			noAuthority = err
		}
	}
	if notSatisfied != nil {
		return errf(ErrPolicy, "Target environment attestation does not meet key release policy requirements: %v", notSatisfied)
	}
	var unknown []string
	for _, a := range p.Authorities() {
		if _, own := s.cfg.Instances.InstanceName(a); own {
			continue
		}
		if _, ok := s.aliases[normAuthority(a)]; ok || s.external.trusted(a) {
			continue
		}
		unknown = append(unknown, a)
	}
	msg := fmt.Sprintf("Target environment attestation statement cannot be verified: the token's authority %s is not an authority of the key's release policy (%v).", tok.Issuer, noAuthority)
	if len(unknown) > 0 {
		msg += fmt.Sprintf(" The policy names authorities this server does not trust: %s; map one to an attestation instance with --authority-alias URL=INSTANCE.", strings.Join(unknown, ", "))
	}
	return errf(ErrUntrustedAuthority, "%s", msg)
}

type releasePayload struct {
	Request  requestEcho `json:"request"`
	Response responseKey `json:"response"`
}

type requestEcho struct {
	APIVersion string `json:"api-version"`
	Enc        string `json:"enc"`
	KID        string `json:"kid"`
	Nonce      string `json:"nonce,omitempty"`
}

type responseKey struct {
	Key any `json:"key"`
}

// runtimeKeyInfo is the token's release key.
type runtimeKeyInfo struct {
	kid string
	pub *rsa.PublicKey
}

// runtimeKey picks the key a release is wrapped to (wire §2.5): the first RSA
// key in the top-level x-ms-runtime.keys with use "enc" or key_ops
// containing "encrypt", and a kid.
func runtimeKey(claims map[string]any) (*runtimeKeyInfo, error) {
	rt, _ := claims["x-ms-runtime"].(map[string]any)
	keys, _ := rt["keys"].([]any)
	for _, k := range keys {
		b, err := json.Marshal(k)
		if err != nil {
			continue
		}
		var j struct {
			KID    string   `json:"kid"`
			KTY    string   `json:"kty"`
			Use    string   `json:"use"`
			KeyOps []string `json:"key_ops"`
			N      string   `json:"n"`
			E      string   `json:"e"`
		}
		if json.Unmarshal(b, &j) != nil || j.KTY != "RSA" || j.KID == "" {
			continue
		}
		if j.Use != "enc" && !contains(j.KeyOps, "encrypt") {
			continue
		}
		n, err1 := jwk.DecodeBase64(j.N)
		e, err2 := jwk.DecodeBase64(j.E)
		if err1 != nil || err2 != nil {
			continue
		}
		pub, err := (&jwk.Key{KeyType: jwk.KeyTypeRSA, N: n, E: e}).PublicKey()
		if err != nil {
			continue
		}
		rp, ok := pub.(*rsa.PublicKey)
		if !ok || rp.Size() < 256 || rp.Size() > 512 {
			continue
		}
		return &runtimeKeyInfo{kid: j.KID, pub: rp}, nil
	}
	return nil, errf(ErrBadRequest, "The target attestation token carries no RSA encryption key (2048-4096 bits, kid, key_ops [\"encrypt\"] or use \"enc\") in x-ms-runtime.keys.")
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
