// Package instance is cvault's attestation service (design §6, seed 002; seeds 000/001 consume
// its tokens for Secure Key Release): named attestation instances, each with its own RS256
// signing keys (sealed by the barrier, shared by every server on one store, rotatable), its own
// policy and reference values and its token lifetime, served at BASE/attestation/{instance}.
// It verifies SEV-SNP (attest/snp) and TDX (attest/tdx) evidence and issues MAA-shaped tokens
// (attest.Issue).
//
// Instances are a cvault resource, not ARM `Microsoft.Attestation/attestationProviders`: in
// Azure an instance is a host ({name}.{region}.attest.azure.net) whose ARM properties (trust
// model, private endpoints, network access) mean nothing here, and whose policy is managed
// through MAA's data-plane JWT protocol in MAA's own policy language, which cvault does not
// implement. What relying parties and guests use — attest, /certs, OpenID metadata, the token
// — is MAA's data plane, path-addressed, and identical. Admin operations are small Bearer
// routes in attesthttp.
package instance

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/go-sev-guest/verify/trust"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cvault/cvault/internal/attest"
	"github.com/cvault/cvault/internal/attest/snp"
	"github.com/cvault/cvault/internal/attest/tdx"
	"github.com/cvault/cvault/internal/barrier"
	"github.com/cvault/cvault/internal/store"
)

// Store kinds owned by this package. Every key write also rewrites its instance record, so
// Changes(instanceKind) alone tells a server that its cached keys are stale.
const (
	instanceKind = "attest-instance" // key: instance name
	keyKind      = "attest-key"      // key: instance/hex(SHA-256 kid source)
)

// DefaultName is the instance `serve` creates.
const DefaultName = "default"

// Token lifetime bounds; MAA issues 8 h tokens.
const (
	MinLifetime = time.Minute
	MaxLifetime = 24 * time.Hour
)

// retireGrace keeps a rotated-out key in /certs a little past its last token's exp, for clock
// skew between servers and relying parties.
const retireGrace = 5 * time.Minute

var (
	// ErrNotFound: no instance by that name.
	ErrNotFound = errors.New("attestation instance not found")
	// ErrExists: Create of an instance that exists.
	ErrExists = errors.New("attestation instance already exists")
	// ErrInvalid: a bad instance name, policy or lifetime.
	ErrInvalid = errors.New("invalid attestation instance settings")
	// ErrMalformed wraps a request body that is not an attestation request.
	ErrMalformed = errors.New("malformed attestation request")
)

// Evidence types, as MAA's attest paths name them.
const (
	TypeSevSnpVM = "SevSnpVm"
	TypeTdxVM    = "TdxVm"
)

// Failure is one failed check.
type Failure struct {
	Check    string `json:"check"`
	Expected string `json:"expected"`
	Seen     string `json:"seen"`
}

// RefusedError is evidence the instance refused: an always-check (Policy false) or the
// instance's policy (Policy true, possibly several failures).
type RefusedError struct {
	Type     string
	Policy   bool
	Failures []Failure
	Err      error // the verifier's cause, for logs
}

func (e *RefusedError) Error() string {
	kind := "verification"
	if e.Policy {
		kind = "the instance's policy"
	}
	parts := make([]string, len(e.Failures))
	for i, f := range e.Failures {
		parts[i] = fmt.Sprintf("check %q failed: expected %s, seen %s", f.Check, f.Expected, f.Seen)
	}
	return fmt.Sprintf("%s evidence refused by %s: %s", e.Type, kind, strings.Join(parts, "; "))
}

func (e *RefusedError) Unwrap() error { return e.Err }

// Instance is one attestation instance's settings.
type Instance struct {
	Name   string `json:"name"`
	Policy Policy `json:"policy"`
	// TokenLifetimeSeconds is exp − iat of the tokens it issues.
	TokenLifetimeSeconds int64     `json:"tokenLifetimeSeconds"`
	CurrentKeyID         string    `json:"currentKeyId"`
	Created              time.Time `json:"created"`
	Updated              time.Time `json:"updated"`
}

// Lifetime is the token lifetime.
func (i Instance) Lifetime() time.Duration {
	return time.Duration(i.TokenLifetimeSeconds) * time.Second
}

// Settings are what Create and Update set; a nil field keeps the current value (Create: the
// strict zero Policy, MAA's 8 h lifetime).
type Settings struct {
	Policy        *Policy
	TokenLifetime time.Duration
}

// PublicKey is one token-verification key of an instance, as /certs publishes it.
type PublicKey struct {
	KeyID       string
	Key         *rsa.PublicKey
	Certificate *x509.Certificate
}

type keyRecord struct {
	KeyID       string    `json:"kid"`
	Sealed      []byte    `json:"sealedKey"` // PKCS#8, sealed with aad keyKind/key
	Certificate []byte    `json:"certificate"`
	Created     time.Time `json:"created"`
	// RetireAt is when a rotated-out key leaves /certs: the last exp it can have signed.
	RetireAt time.Time `json:"retireAt,omitzero"`
}

// Config are the Service's dependencies and knobs.
type Config struct {
	Store  store.Store
	Sealer barrier.Sealer
	// BaseURL is the server's public base URL (https://host[:port]).
	BaseURL string
	// SimulatedRoots are trusted besides AMD's (`serve --trust-sim-root`); without them simulated
	// evidence fails the chain check.
	SimulatedRoots []snp.Root
	// KDS fetches missing VCEKs and AMD's CRLs (`serve --amd-kds`, a kdscache.Getter); with it,
	// revoked VCEK/ASK certificates are refused. Nil (the default) verifies offline.
	KDS trust.HTTPSGetter
	// TDXRoots replaces Intel's SGX root (tests); nil means Intel's.
	TDXRoots *x509.CertPool
	// Registerer receives the attestation metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Now        func() time.Time // nil: time.Now
	Rand       io.Reader        // jti and key generation; nil: crypto/rand
}

// Service holds the instances.
type Service struct {
	cfg   Config
	base  string
	cache *snp.ChainCache

	mu     sync.Mutex
	seen   int64
	states map[string]*state

	tokens   *prometheus.CounterVec
	refusals *prometheus.CounterVec
}

// state is an instance with its usable keys, unsealed.
type state struct {
	inst    Instance
	current attest.Signer
	keys    []signerEntry
}

type signerEntry struct {
	signer   attest.Signer
	retireAt time.Time
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// New returns the service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Sealer == nil {
		return nil, errors.New("attestation: a store and a sealer are required")
	}
	if cfg.BaseURL == "" {
		return nil, errors.New("attestation: no base URL")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	s := &Service{
		cfg:    cfg,
		base:   strings.TrimRight(cfg.BaseURL, "/"),
		cache:  snp.NewChainCache(1024),
		seen:   -1,
		states: map[string]*state{},
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cvault_attestation_tokens_total", Help: "Attestation tokens issued, by evidence type.",
		}, []string{"type"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cvault_attestation_refusals_total", Help: "Attestation requests refused, by evidence type and failed check.",
		}, []string{"type", "check"}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.tokens, s.refusals} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("attestation: metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Issuer is the instance's URL, the `iss` of its tokens: BASE/attestation/{name}.
func (s *Service) Issuer(name string) string { return s.base + "/attestation/" + strings.ToLower(name) }

// InstanceName returns the instance an issuer URL of this server names (the inverse of
// Issuer; a trailing slash is ignored), for resolving release-policy authorities.
func (s *Service) InstanceName(issuer string) (string, bool) {
	rest, ok := strings.CutPrefix(strings.TrimRight(issuer, "/"), s.base+"/attestation/")
	if !ok || !nameRE.MatchString(strings.ToLower(rest)) {
		return "", false
	}
	return strings.ToLower(rest), true
}

func checkName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: instance name %q must be 1-63 lowercase letters, digits or hyphens, starting with a letter or digit", ErrInvalid, name)
	}
	return nil
}

func checkLifetime(d time.Duration) error {
	if d < MinLifetime || d > MaxLifetime || d%time.Second != 0 {
		return fmt.Errorf("%w: token lifetime %s must be whole seconds between %s and %s", ErrInvalid, d, MinLifetime, MaxLifetime)
	}
	return nil
}

// Create makes an instance with a fresh signing key.
func (s *Service) Create(ctx context.Context, name string, set Settings) (Instance, error) {
	return s.create(ctx, name, set, false)
}

// Ensure creates the instance unless it exists (by any server on the store), and returns it.
func (s *Service) Ensure(ctx context.Context, name string, set Settings) (Instance, error) {
	return s.create(ctx, name, set, true)
}

func (s *Service) create(ctx context.Context, name string, set Settings, existingOK bool) (Instance, error) {
	if err := checkName(name); err != nil {
		return Instance{}, err
	}
	if existingOK {
		if inst, err := s.Get(ctx, name); err == nil || !errors.Is(err, ErrNotFound) {
			return inst, err
		}
	}
	now := s.cfg.Now().UTC()
	inst := Instance{Name: name, TokenLifetimeSeconds: int64(attest.DefaultLifetime / time.Second), Created: now, Updated: now}
	if set.Policy != nil {
		inst.Policy = *set.Policy
	}
	if set.TokenLifetime != 0 {
		inst.TokenLifetimeSeconds = int64(set.TokenLifetime / time.Second)
		if err := checkLifetime(set.TokenLifetime); err != nil {
			return Instance{}, err
		}
	}
	if err := inst.Policy.Check(); err != nil {
		return Instance{}, err
	}
	// Key generation is slow and pure, so it happens outside the transaction.
	key, rec, err := s.newKey(name, now)
	if err != nil {
		return Instance{}, err
	}
	inst.CurrentKeyID = key.KeyID
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.Get(ctx, instanceKind, name); err == nil {
			return ErrExists
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := s.putKey(ctx, tx, name, rec); err != nil {
			return err
		}
		return putJSON(ctx, tx, instanceKind, name, inst)
	})
	if errors.Is(err, ErrExists) && existingOK {
		return s.Get(ctx, name) // another server created it first
	}
	if err != nil {
		return Instance{}, fmt.Errorf("create attestation instance %s: %w", name, err)
	}
	return inst, nil
}

// Get returns an instance's settings.
func (s *Service) Get(ctx context.Context, name string) (Instance, error) {
	var inst Instance
	rec, err := s.cfg.Store.Get(ctx, instanceKind, strings.ToLower(name))
	if errors.Is(err, store.ErrNotFound) {
		return inst, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return inst, fmt.Errorf("attestation instance %s: %w", name, err)
	}
	if err := json.Unmarshal(rec.Value, &inst); err != nil {
		return inst, fmt.Errorf("attestation instance %s: %w", name, err)
	}
	return inst, nil
}

// List returns every instance, by name.
func (s *Service) List(ctx context.Context) ([]Instance, error) {
	recs, err := s.cfg.Store.List(ctx, instanceKind, "", "", 0)
	if err != nil {
		return nil, fmt.Errorf("list attestation instances: %w", err)
	}
	out := make([]Instance, 0, len(recs))
	for _, r := range recs {
		var inst Instance
		if err := json.Unmarshal(r.Value, &inst); err != nil {
			return nil, fmt.Errorf("attestation instance %s: %w", r.Key, err)
		}
		out = append(out, inst)
	}
	return out, nil
}

// Update replaces the policy and/or the token lifetime.
func (s *Service) Update(ctx context.Context, name string, set Settings) (Instance, error) {
	if set.Policy != nil {
		if err := set.Policy.Check(); err != nil {
			return Instance{}, err
		}
	}
	if set.TokenLifetime != 0 {
		if err := checkLifetime(set.TokenLifetime); err != nil {
			return Instance{}, err
		}
	}
	return s.modify(ctx, name, func(_ store.Tx, inst *Instance) error {
		if set.Policy != nil {
			inst.Policy = *set.Policy
		}
		if set.TokenLifetime != 0 {
			inst.TokenLifetimeSeconds = int64(set.TokenLifetime / time.Second)
		}
		return nil
	})
}

// RotateKey gives the instance a fresh signing key. The old key stays in /certs until every
// token it signed has expired (rotation time + the token lifetime), then is deleted by a later
// rotation.
func (s *Service) RotateKey(ctx context.Context, name string) (Instance, error) {
	now := s.cfg.Now().UTC()
	key, rec, err := s.newKey(strings.ToLower(name), now)
	if err != nil {
		return Instance{}, err
	}
	return s.modify(ctx, name, func(tx store.Tx, inst *Instance) error {
		old, err := tx.List(ctx, keyKind, inst.Name+"/", "", 0)
		if err != nil {
			return err
		}
		for _, r := range old {
			var kr keyRecord
			if err := json.Unmarshal(r.Value, &kr); err != nil {
				return fmt.Errorf("key record %s: %w", r.Key, err)
			}
			switch {
			case kr.RetireAt.IsZero():
				kr.RetireAt = now.Add(inst.Lifetime() + retireGrace)
				if err := putJSON(ctx, tx, keyKind, r.Key, kr); err != nil {
					return err
				}
			case kr.RetireAt.Before(now):
				if err := tx.Delete(ctx, keyKind, r.Key, store.Any); err != nil {
					return err
				}
			}
		}
		inst.CurrentKeyID = key.KeyID
		return s.putKey(ctx, tx, inst.Name, rec)
	})
}

func (s *Service) modify(ctx context.Context, name string, fn func(store.Tx, *Instance) error) (Instance, error) {
	name = strings.ToLower(name)
	var inst Instance
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		rec, err := tx.Get(ctx, instanceKind, name)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		if err != nil {
			return err
		}
		inst = Instance{}
		if err := json.Unmarshal(rec.Value, &inst); err != nil {
			return err
		}
		if err := fn(tx, &inst); err != nil {
			return err
		}
		inst.Updated = s.cfg.Now().UTC()
		return putJSON(ctx, tx, instanceKind, name, inst)
	})
	if err != nil {
		return Instance{}, fmt.Errorf("update attestation instance %s: %w", name, err)
	}
	return inst, nil
}

// newKey generates an RSA-2048 key with its self-signed certificate (MAA's x5c) and seals it.
func (s *Service) newKey(name string, now time.Time) (attest.Signer, keyRecord, error) {
	key, err := rsa.GenerateKey(s.cfg.Rand, 2048)
	if err != nil {
		return attest.Signer{}, keyRecord{}, fmt.Errorf("attestation signing key: %w", err)
	}
	cert, err := attest.SelfSignedCertificate(key, "cvault attestation "+name, now, 10*365*24*time.Hour)
	if err != nil {
		return attest.Signer{}, keyRecord{}, err
	}
	signer, err := attest.NewSigner(key, cert)
	if err != nil {
		return attest.Signer{}, keyRecord{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return attest.Signer{}, keyRecord{}, fmt.Errorf("attestation signing key: %w", err)
	}
	return signer, keyRecord{KeyID: signer.KeyID, Sealed: der, Certificate: cert.Raw, Created: now}, nil
}

func keyRecordKey(instance, kid string) string {
	sum := sha256.Sum256([]byte(kid))
	return instance + "/" + hex.EncodeToString(sum[:16])
}

// putKey seals rec.Sealed (plain PKCS#8 on the way in) under its record's identity and writes it.
func (s *Service) putKey(ctx context.Context, tx store.Tx, instance string, rec keyRecord) error {
	k := keyRecordKey(instance, rec.KeyID)
	sealed, err := s.cfg.Sealer.Seal(keyKind+"/"+k, rec.Sealed)
	if err != nil {
		return fmt.Errorf("seal attestation signing key: %w", err)
	}
	rec.Sealed = sealed
	if _, err := tx.Get(ctx, keyKind, k); err == nil {
		return fmt.Errorf("attestation key %s exists", rec.KeyID)
	}
	return putJSON(ctx, tx, keyKind, k, rec)
}

func putJSON(ctx context.Context, tx store.Tx, kind, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = tx.Put(ctx, kind, key, b, store.Any)
	return err
}

// load returns the instance's state from the cache, reloading everything when any server
// changed any instance since.
func (s *Service) load(ctx context.Context, name string) (*state, error) {
	name = strings.ToLower(name)
	changes, err := s.cfg.Store.Changes(ctx, instanceKind)
	if err != nil {
		return nil, fmt.Errorf("attestation instance %s: %w", name, err)
	}
	s.mu.Lock()
	if changes != s.seen {
		s.states, s.seen = map[string]*state{}, changes
	}
	st := s.states[name]
	s.mu.Unlock()
	if st != nil {
		return st, nil
	}
	if st, err = s.read(ctx, name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.seen == changes {
		s.states[name] = st
	}
	s.mu.Unlock()
	return st, nil
}

func (s *Service) read(ctx context.Context, name string) (*state, error) {
	st := &state{}
	err := s.cfg.Store.View(ctx, func(r store.Reader) error {
		rec, err := r.Get(ctx, instanceKind, name)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal(rec.Value, &st.inst); err != nil {
			return err
		}
		keys, err := r.List(ctx, keyKind, name+"/", "", 0)
		if err != nil {
			return err
		}
		for _, kr := range keys {
			var k keyRecord
			if err := json.Unmarshal(kr.Value, &k); err != nil {
				return fmt.Errorf("key record %s: %w", kr.Key, err)
			}
			der, err := s.cfg.Sealer.Unseal(keyKind+"/"+kr.Key, k.Sealed)
			if err != nil {
				return fmt.Errorf("key record %s: %w", kr.Key, err)
			}
			priv, err := x509.ParsePKCS8PrivateKey(der)
			if err != nil {
				return fmt.Errorf("key record %s: %w", kr.Key, err)
			}
			rsaKey, ok := priv.(*rsa.PrivateKey)
			if !ok {
				return fmt.Errorf("key record %s: not an RSA key", kr.Key)
			}
			cert, err := x509.ParseCertificate(k.Certificate)
			if err != nil {
				return fmt.Errorf("key record %s: %w", kr.Key, err)
			}
			signer := attest.Signer{Key: rsaKey, Certificate: cert, KeyID: k.KeyID}
			if k.KeyID == st.inst.CurrentKeyID {
				st.current = signer
			}
			st.keys = append(st.keys, signerEntry{signer: signer, retireAt: k.RetireAt})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("attestation instance %s: %w", name, err)
	}
	if st.current.Key == nil {
		return nil, fmt.Errorf("attestation instance %s: current signing key %s missing", name, st.inst.CurrentKeyID)
	}
	return st, nil
}

// Keys returns the instance's token-verification keys still in force (current first), the
// content of its /certs.
func (s *Service) Keys(ctx context.Context, name string) ([]PublicKey, error) {
	st, err := s.load(ctx, name)
	if err != nil {
		return nil, err
	}
	signers := s.liveSigners(st)
	out := make([]PublicKey, len(signers))
	for i, sg := range signers {
		out[i] = PublicKey{KeyID: sg.KeyID, Key: &sg.Key.PublicKey, Certificate: sg.Certificate}
	}
	return out, nil
}

func (s *Service) liveSigners(st *state) []attest.Signer {
	now := s.cfg.Now()
	out := []attest.Signer{st.current}
	for _, k := range st.keys {
		if k.signer.KeyID != st.current.KeyID && (k.retireAt.IsZero() || now.Before(k.retireAt)) {
			out = append(out, k.signer)
		}
	}
	return out
}

// JWKS renders the instance's /certs document.
func (s *Service) JWKS(ctx context.Context, name string) ([]byte, error) {
	st, err := s.load(ctx, name)
	if err != nil {
		return nil, err
	}
	return attest.JWKS(s.liveSigners(st)...)
}

// Metadata is the instance's OpenID configuration.
func (s *Service) Metadata(ctx context.Context, name string) (attest.Metadata, error) {
	st, err := s.load(ctx, name)
	if err != nil {
		return attest.Metadata{}, err
	}
	return attest.OpenIDMetadata(s.Issuer(st.inst.Name), claimsSupported), nil
}

var claimsSupported = []string{"x-ms-attestation-type", "x-ms-compliance-status", "x-ms-policy-hash", "x-ms-runtime",
	"x-ms-inittime", "x-ms-ver", "x-cvault-simulated", "nonce", "x-ms-sevsnpvm-*", "tdx_*"}

// AttestSevSnpVM verifies an MAA SevSnpVm request body and returns the token.
func (s *Service) AttestSevSnpVM(ctx context.Context, name string, body []byte) (string, error) {
	st, err := s.load(ctx, name)
	if err != nil {
		return "", err
	}
	ev, err := snp.ParseRequest(body)
	if err != nil {
		s.refusals.WithLabelValues(TypeSevSnpVM, "request").Inc()
		return "", fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	v, err := snp.Verify(ctx, ev, snp.Options{Now: s.cfg.Now, ExtraRoots: s.cfg.SimulatedRoots, Getter: s.cfg.KDS, Cache: s.cache})
	if err != nil {
		var ee *snp.EvidenceError
		if !errors.As(err, &ee) {
			return "", fmt.Errorf("verify SevSnpVm evidence: %w", err)
		}
		return "", s.refuse(&RefusedError{Type: TypeSevSnpVM, Failures: []Failure{{ee.Check, ee.Expected, ee.Seen}}, Err: err})
	}
	pol := st.inst.Policy
	if err := snp.Validate(v, pol.SNP()); err != nil {
		return "", s.refuse(policyRefusal(TypeSevSnpVM, err))
	}
	claims := snp.Claims(v, snp.ClaimOptions{References: pol.SNPReferences(), PolicyText: pol.Text()})
	return s.issue(st, TypeSevSnpVM, claims, v.Nonce)
}

// AttestTdxVM verifies an MAA TdxVm request body and returns the token.
func (s *Service) AttestTdxVM(ctx context.Context, name string, body []byte) (string, error) {
	st, err := s.load(ctx, name)
	if err != nil {
		return "", err
	}
	ev, err := tdx.ParseRequest(body)
	if err != nil {
		s.refusals.WithLabelValues(TypeTdxVM, "request").Inc()
		return "", fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	v, err := tdx.Verify(ctx, ev, tdx.Options{Now: s.cfg.Now, Roots: s.cfg.TDXRoots})
	if err != nil {
		var ee *tdx.EvidenceError
		if !errors.As(err, &ee) {
			return "", fmt.Errorf("verify TdxVm evidence: %w", err)
		}
		return "", s.refuse(&RefusedError{Type: TypeTdxVM, Failures: []Failure{{ee.Check, ee.Expected, ee.Seen}}, Err: err})
	}
	pol := st.inst.Policy
	if v.Debuggable() && !pol.AllowDebug {
		return "", s.refuse(&RefusedError{Type: TypeTdxVM, Policy: true, Failures: []Failure{{"debug", "TD_ATTRIBUTES.DEBUG off", "DEBUG on"}}})
	}
	claims := tdx.Claims(v, tdx.ClaimOptions{PolicyText: pol.Text()})
	return s.issue(st, TypeTdxVM, claims, v.Nonce)
}

func policyRefusal(typ string, err error) *RefusedError {
	re := &RefusedError{Type: typ, Policy: true, Err: err}
	var pes []*snp.PolicyError
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			var pe *snp.PolicyError
			if errors.As(e, &pe) {
				pes = append(pes, pe)
			}
		}
	} else {
		var pe *snp.PolicyError
		if errors.As(err, &pe) {
			pes = append(pes, pe)
		}
	}
	for _, pe := range pes {
		re.Failures = append(re.Failures, Failure{pe.Check, pe.Expected, pe.Seen})
	}
	if len(re.Failures) == 0 {
		re.Failures = []Failure{{"policy", "evidence the policy accepts", err.Error()}}
	}
	return re
}

func (s *Service) refuse(e *RefusedError) error {
	for _, f := range e.Failures {
		s.refusals.WithLabelValues(e.Type, f.Check).Inc()
	}
	return e
}

func (s *Service) issue(st *state, typ string, claims map[string]any, nonce string) (string, error) {
	iss := s.Issuer(st.inst.Name)
	tok, err := attest.Issue(claims, st.current, attest.Options{
		Issuer: iss, JKU: iss + "/certs", Lifetime: st.inst.Lifetime(), Now: s.cfg.Now, Rand: s.cfg.Rand, Nonce: nonce,
	})
	if err != nil {
		return "", fmt.Errorf("issue %s token: %w", typ, err)
	}
	s.tokens.WithLabelValues(typ).Inc()
	return tok, nil
}
