package identity

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/cvault/cvault/internal/store"
)

// signingKeyRecord is one tenant signing key. The private key is sealed
// by the barrier with the record's kind/key as associated data.
type signingKeyRecord struct {
	Kid     string          `json:"kid"`
	Sealed  []byte          `json:"sealed"`
	Public  jose.JSONWebKey `json:"public"`
	Created time.Time       `json:"created"`
	// Retired is when a newer key replaced this one; it stays in the JWKS
	// until every token it signed has expired.
	Retired *time.Time `json:"retired,omitempty"`
}

func sealAAD(tenant, kid string) string { return kindSigningKey + "/" + tenant + "/" + kid }

// newSigningKeyRecord generates and seals a key for tenant.
func (s *Service) newSigningKeyRecord(tenant string, now time.Time) (signingKeyRecord, error) {
	priv, err := s.cfg.NewSigningKey()
	if err != nil {
		return signingKeyRecord{}, fmt.Errorf("identity: generate signing key: %w", err)
	}
	pub := jose.JSONWebKey{Key: &priv.PublicKey, Algorithm: string(jose.RS256), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return signingKeyRecord{}, fmt.Errorf("identity: thumbprint: %w", err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	der := x509.MarshalPKCS1PrivateKey(priv)
	sealed, err := s.cfg.Barrier.Seal(sealAAD(tenant, pub.KeyID), der)
	if err != nil {
		return signingKeyRecord{}, fmt.Errorf("identity: seal signing key: %w", err)
	}
	return signingKeyRecord{Kid: pub.KeyID, Sealed: sealed, Public: pub, Created: now}, nil
}

// RotateSigningKey makes a fresh key the tenant's signing key. Older keys
// stay published until the tokens they signed have expired, then are
// deleted (at this or a later rotation).
func (s *Service) RotateSigningKey(ctx context.Context, tenant string) (string, error) {
	tenant = strings.ToLower(tenant)
	if _, err := s.GetTenant(ctx, tenant); err != nil {
		return "", err
	}
	now := s.now()
	rec, err := s.newSigningKeyRecord(tenant, now)
	if err != nil {
		return "", err
	}
	err = s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		old, err := listJSON[signingKeyRecord](ctx, tx, kindSigningKey, tenant+"/")
		if err != nil {
			return err
		}
		for _, k := range old {
			switch {
			case k.Retired == nil:
				k.Retired = &now
				if err := putJSON(ctx, tx, kindSigningKey, tenant+"/"+k.Kid, k, store.Any); err != nil {
					return err
				}
			case !s.published(k, now):
				if err := deleteKey(ctx, tx, kindSigningKey, tenant+"/"+k.Kid); err != nil {
					return err
				}
			}
		}
		return putJSON(ctx, tx, kindSigningKey, tenant+"/"+rec.Kid, rec, store.Absent)
	})
	if err != nil {
		return "", fmt.Errorf("identity: rotate signing key: %w", err)
	}
	s.keys.forget(tenant)
	return rec.Kid, nil
}

// published reports whether a key still belongs in the JWKS: current, or
// retired less than a token lifetime (plus skew) ago.
func (s *Service) published(k signingKeyRecord, now time.Time) bool {
	return k.Retired == nil || now.Before(k.Retired.Add(s.cfg.TokenLifetime+clockSkew))
}

// keyring caches each tenant's keys: the current signer and the public
// keys by kid. Entries are re-checked against the store's change counter
// at most every keyRecheck, and at once when a token names an unknown kid,
// so a rotation on another server is picked up within seconds.
type keyring struct {
	s       *Service
	mu      sync.Mutex
	tenants map[string]*tenantKeys
}

const keyRecheck = 5 * time.Second

type tenantKeys struct {
	kid     string
	signer  jose.Signer
	public  map[string]*rsa.PublicKey
	jwks    jose.JSONWebKeySet
	counter int64
	checked time.Time
}

func newKeyring(s *Service) *keyring { return &keyring{s: s, tenants: map[string]*tenantKeys{}} }

func (kr *keyring) forget(tenant string) {
	kr.mu.Lock()
	delete(kr.tenants, tenant)
	kr.mu.Unlock()
}

// get returns tenant's keys, reloading when stale (or when force and the
// store changed).
func (kr *keyring) get(ctx context.Context, tenant string, force bool) (*tenantKeys, error) {
	now := kr.s.now()
	kr.mu.Lock()
	tk := kr.tenants[tenant]
	kr.mu.Unlock()
	if tk != nil && !force && now.Sub(tk.checked) < keyRecheck {
		return tk, nil
	}
	counter, err := kr.s.cfg.Store.Changes(ctx, kindSigningKey)
	if err != nil {
		return nil, fmt.Errorf("identity: signing keys: %w", err)
	}
	if tk != nil && counter == tk.counter {
		kr.mu.Lock()
		tk.checked = now
		kr.mu.Unlock()
		return tk, nil
	}
	tk, err = kr.load(ctx, tenant, counter, now)
	if err != nil {
		return nil, err
	}
	kr.mu.Lock()
	kr.tenants[tenant] = tk
	kr.mu.Unlock()
	return tk, nil
}

func (kr *keyring) load(ctx context.Context, tenant string, counter int64, now time.Time) (*tenantKeys, error) {
	recs, err := listJSON[signingKeyRecord](ctx, kr.s.cfg.Store, kindSigningKey, tenant+"/")
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("signing keys of tenant %s: %w", tenant, ErrNotFound)
	}
	// Newest first: the current key is the newest unretired one.
	slices.SortFunc(recs, func(a, b signingKeyRecord) int { return b.Created.Compare(a.Created) })
	tk := &tenantKeys{public: map[string]*rsa.PublicKey{}, counter: counter, checked: now}
	for _, r := range recs {
		if !kr.s.published(r, now) {
			continue
		}
		pub, ok := r.Public.Key.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("identity: signing key %s is not RSA", r.Kid)
		}
		tk.public[r.Kid] = pub
		tk.jwks.Keys = append(tk.jwks.Keys, r.Public)
		if r.Retired != nil || tk.signer != nil {
			continue
		}
		der, err := kr.s.cfg.Barrier.Unseal(sealAAD(tenant, r.Kid), r.Sealed)
		if err != nil {
			return nil, fmt.Errorf("identity: unseal signing key of tenant %s: %w", tenant, err)
		}
		priv, err := x509.ParsePKCS1PrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("identity: parse signing key of tenant %s: %w", tenant, err)
		}
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: priv, KeyID: r.Kid}},
			(&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			return nil, fmt.Errorf("identity: signer: %w", err)
		}
		tk.kid, tk.signer = r.Kid, sig
	}
	if tk.signer == nil {
		return nil, fmt.Errorf("identity: tenant %s has no current signing key", tenant)
	}
	return tk, nil
}

// JWKS returns the tenant's published signing keys.
func (s *Service) JWKS(ctx context.Context, tenant string) (jose.JSONWebKeySet, error) {
	if _, err := s.GetTenant(ctx, tenant); err != nil {
		return jose.JSONWebKeySet{}, err
	}
	tk, err := s.keys.get(ctx, strings.ToLower(tenant), false)
	if err != nil {
		return jose.JSONWebKeySet{}, err
	}
	return tk.jwks, nil
}

// publicKey returns tenant's key kid, reloading once if it is unknown.
func (s *Service) publicKey(ctx context.Context, tenant, kid string) (*rsa.PublicKey, error) {
	tk, err := s.keys.get(ctx, tenant, false)
	if err != nil {
		return nil, err
	}
	if k, ok := tk.public[kid]; ok {
		return k, nil
	}
	if tk, err = s.keys.get(ctx, tenant, true); err != nil {
		return nil, err
	}
	if k, ok := tk.public[kid]; ok {
		return k, nil
	}
	return nil, errUnknownKey
}

var errUnknownKey = errors.New("identity: token signed by an unknown key")
