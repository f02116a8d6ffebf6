package release

import (
	"context"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/cvault/cvault/internal/keyvault"
	"github.com/cvault/cvault/internal/store"
)

// signerValidity is the vault signing certificate's lifetime; it is
// reissued when less than signerRenew remains.
const (
	signerValidity = 365 * 24 * time.Hour
	signerRenew    = 30 * 24 * time.Hour
)

// signerRecord is a vault's release-signing key (PKCS#8, sealed with aad
// KindSigner/key) and its certificate from cvault's CA.
type signerRecord struct {
	Sealed      []byte `json:"sealedKey"`
	Certificate []byte `json:"certificate"`
}

// signer signs release responses for one vault.
type signer struct {
	key  *rsa.PrivateKey
	leaf *x509.Certificate
	jose jose.Signer
}

func (sg *signer) sign(payload []byte) (string, error) {
	obj, err := sg.jose.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("release: sign: %w", err)
	}
	return obj.CompactSerialize()
}

// signer returns the vault's signing key and certificate, creating them on
// first use (once per vault across servers: the record is written with
// store.Absent and a loser of the race reads the winner's).
func (s *Service) signer(ctx context.Context, vault *keyvault.Vault, vaultURI string) (*signer, error) {
	u, err := url.Parse(vaultURI)
	if err != nil || u.Hostname() == "" {
		return nil, fmt.Errorf("release: vault URI %q", vaultURI)
	}
	host := u.Hostname()
	key := vault.Key()
	now := s.cfg.Now()
	s.mu.Lock()
	sg := s.signers[key]
	s.mu.Unlock()
	if sg != nil && sg.fits(host, now) {
		return sg, nil
	}
	for range 3 {
		rec, err := s.cfg.Store.Get(ctx, KindSigner, key)
		ver := store.Absent
		switch {
		case err == nil:
			ver = rec.Version
			if sg, err = s.openSigner(key, rec.Value); err != nil {
				return nil, err
			}
			if sg.fits(host, now) {
				s.mu.Lock()
				s.signers[key] = sg
				s.mu.Unlock()
				return sg, nil
			}
		case !errors.Is(err, store.ErrNotFound):
			return nil, fmt.Errorf("release: vault signer: %w", err)
		}
		value, err := s.newSigner(key, host, now)
		if err != nil {
			return nil, err
		}
		if _, err := store.Put(ctx, s.cfg.Store, KindSigner, key, value, ver); errors.Is(err, store.ErrConflict) {
			continue // another server made one; use it
		} else if err != nil {
			return nil, fmt.Errorf("release: vault signer: %w", err)
		}
		sg, err := s.openSigner(key, value)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.signers[key] = sg
		s.mu.Unlock()
		return sg, nil
	}
	return nil, errors.New("release: vault signer: concurrent changes, retry")
}

func (sg *signer) fits(host string, now time.Time) bool {
	return slices.ContainsFunc(sg.leaf.DNSNames, func(n string) bool { return strings.EqualFold(n, host) }) &&
		now.Add(signerRenew).Before(sg.leaf.NotAfter)
}

func (s *Service) newSigner(key, host string, now time.Time) ([]byte, error) {
	k, err := rsa.GenerateKey(s.cfg.Rand, 2048)
	if err != nil {
		return nil, fmt.Errorf("release: vault signing key: %w", err)
	}
	cert, err := s.cfg.CA.Issue(&k.PublicKey, host, []string{host}, now, signerValidity)
	if err != nil {
		return nil, fmt.Errorf("release: vault signing certificate: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("release: vault signing key: %w", err)
	}
	sealed, err := s.cfg.Sealer.Seal(KindSigner+"/"+key, der)
	clear(der)
	if err != nil {
		return nil, fmt.Errorf("release: seal vault signing key: %w", err)
	}
	return json.Marshal(signerRecord{Sealed: sealed, Certificate: cert.Raw})
}

func (s *Service) openSigner(key string, value []byte) (*signer, error) {
	var rec signerRecord
	if err := json.Unmarshal(value, &rec); err != nil {
		return nil, fmt.Errorf("release: vault signer record: %w", err)
	}
	der, err := s.cfg.Sealer.Unseal(KindSigner+"/"+key, rec.Sealed)
	if err != nil {
		return nil, fmt.Errorf("release: unseal vault signing key: %w", err)
	}
	pk, err := x509.ParsePKCS8PrivateKey(der)
	clear(der)
	if err != nil {
		return nil, fmt.Errorf("release: vault signing key: %w", err)
	}
	k, ok := pk.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("release: vault signing key is not RSA")
	}
	leaf, err := x509.ParseCertificate(rec.Certificate)
	if err != nil {
		return nil, fmt.Errorf("release: vault signing certificate: %w", err)
	}
	// Header as Key Vault's (wire §2.2): kid = uppercase hex SHA-1 thumbprint,
	// x5t, x5t#S256, x5c = [leaf, CA] (std base64 DER), typ JWT.
	sha1Sum := sha1.Sum(leaf.Raw)
	sha256Sum := sha256.Sum256(leaf.Raw)
	opts := (&jose.SignerOptions{}).WithType("JWT").
		WithHeader("x5t", base64.RawURLEncoding.EncodeToString(sha1Sum[:])).
		WithHeader("x5t#S256", base64.RawURLEncoding.EncodeToString(sha256Sum[:])).
		WithHeader("x5c", []string{base64.StdEncoding.EncodeToString(leaf.Raw), base64.StdEncoding.EncodeToString(s.cfg.CA.Cert.Raw)})
	js, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256,
		Key: jose.JSONWebKey{Key: k, KeyID: strings.ToUpper(hex.EncodeToString(sha1Sum[:]))}}, opts)
	if err != nil {
		return nil, fmt.Errorf("release: signer: %w", err)
	}
	return &signer{key: k, leaf: leaf, jose: js}, nil
}
