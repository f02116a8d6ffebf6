// Package pki holds cvault's local certificate authority: the ECDSA P-256
// CA that `serve` creates on first start, the server's TLS certificate, and
// (for Secure Key Release) the per-vault RSA signing certificates whose
// chain the release JWS carries in x5c. The CA key is sealed in the store so
// every server sharing a database issues under the same CA.
package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/cvault/cvault/internal/barrier"
	"github.com/cvault/cvault/internal/store"
)

// CA is a loaded certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// PEM returns the CA certificate in PEM form (what clients trust).
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Pool returns a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

const (
	kind  = "pki"
	caKey = "ca"
)

type caRecord struct {
	Cert      []byte `json:"cert"`      // DER
	SealedKey []byte `json:"sealedKey"` // PKCS#8, sealed
}

// LoadOrCreateCA loads the CA from the store, creating it on first start.
// Servers racing on an empty store converge on the first one written.
func LoadOrCreateCA(ctx context.Context, s store.Store, sl barrier.Sealer, now time.Time) (*CA, error) {
	for range 2 {
		rec, err := s.Get(ctx, kind, caKey)
		if err == nil {
			return openCA(rec.Value, sl)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("pki: load CA: %w", err)
		}
		value, err := newCA(sl, now)
		if err != nil {
			return nil, err
		}
		if _, err := store.Put(ctx, s, kind, caKey, value, store.Absent); err == nil {
			return openCA(value, sl)
		} else if !errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("pki: store CA: %w", err)
		}
	}
	return nil, errors.New("pki: could not load or create the CA")
}

func newCA(sl barrier.Sealer, now time.Time) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "cvault local CA", Organization: []string{"cvault"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	sealed, err := sl.Seal(kind+"/"+caKey, p8)
	if err != nil {
		return nil, err
	}
	return json.Marshal(caRecord{Cert: der, SealedKey: sealed})
}

func openCA(value []byte, sl barrier.Sealer) (*CA, error) {
	var rec caRecord
	if err := json.Unmarshal(value, &rec); err != nil {
		return nil, fmt.Errorf("pki: CA record: %w", err)
	}
	cert, err := x509.ParseCertificate(rec.Cert)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	p8, err := sl.Unseal(kind+"/"+caKey, rec.SealedKey)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(p8)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("pki: CA key is not a signer")
	}
	return &CA{Cert: cert, Key: signer}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

// Issue signs a leaf certificate for pub with the given DNS names and IPs.
// serverAuth adds the TLS server usage; every leaf may sign (the vault
// signing certificate signs release JWSs).
func (ca *CA) Issue(pub crypto.PublicKey, commonName string, hosts []string, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: commonName, Organization: []string{"cvault"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %s: %w", commonName, err)
	}
	return x509.ParseCertificate(der)
}

// ServerFiles are the TLS files kept in the data dir.
type ServerFiles struct {
	CAPath, CertPath, KeyPath string
}

// EnsureServerCert writes the CA certificate and a server certificate for
// hosts into dir, reusing an existing server certificate when it is issued
// by ca, still valid for a day, and covers every host (so adding
// --hostname reissues it).
func EnsureServerCert(ca *CA, dir string, hosts []string, now time.Time) (ServerFiles, error) {
	f := ServerFiles{
		CAPath:   filepath.Join(dir, "ca.pem"),
		CertPath: filepath.Join(dir, "tls.pem"),
		KeyPath:  filepath.Join(dir, "tls-key.pem"),
	}
	if err := os.WriteFile(f.CAPath, ca.PEM(), 0o644); err != nil {
		return f, fmt.Errorf("pki: write CA: %w", err)
	}
	if reusable(ca, f, hosts, now) {
		return f, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, fmt.Errorf("pki: server key: %w", err)
	}
	cert, err := ca.Issue(&key.PublicKey, "cvault server", hosts, now, 397*24*time.Hour)
	if err != nil {
		return f, err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return f, fmt.Errorf("pki: %w", err)
	}
	if err := writeFileAtomic(f.KeyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
		return f, err
	}
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), ca.PEM()...)
	if err := writeFileAtomic(f.CertPath, chain, 0o644); err != nil {
		return f, err
	}
	return f, nil
}

func reusable(ca *CA, f ServerFiles, hosts []string, now time.Time) bool {
	b, err := os.ReadFile(f.CertPath)
	if err != nil {
		return false
	}
	if _, err := os.Stat(f.KeyPath); err != nil {
		return false
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return false
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || cert.CheckSignatureFrom(ca.Cert) != nil || now.Add(24*time.Hour).After(cert.NotAfter) {
		return false
	}
	have := map[string]bool{}
	for _, d := range cert.DNSNames {
		have[d] = true
	}
	for _, ip := range cert.IPAddresses {
		have[ip.String()] = true
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			h = ip.String()
		}
		if !have[h] {
			return false
		}
	}
	return true
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	return nil
}

// Fingerprint is the hex SHA-256 of a certificate, for display.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return fmt.Sprintf("%x", sum)
}
