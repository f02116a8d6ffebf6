// Package kdstest is a fake AMD Key Distribution Service for tests (issue 6): an httptest TLS
// server answering KDS paths from the simulated platform's chain (internal/sim) — VCEKs per
// chip and TCB, cert_chain, and CRLs signed by the simulated ARK — and a client that sends
// https://kdsintf.amd.com requests to it. Tests never reach the real KDS.
package kdstest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/testing/data"

	"github.com/cvault/cvault/internal/sim"
)

// Server is the fake KDS.
type Server struct {
	srv      *httptest.Server
	platform *sim.Platform
	ark      *x509.Certificate

	requests atomic.Int64

	mu       sync.Mutex
	byPath   map[string]int
	revoked  []*big.Int
	throttle []string // Retry-After values answered with 429 before serving, consumed in order
	crlLife  time.Duration
	crlCA    *x509.Certificate
	crlKey   crypto.Signer
}

// Start serves the fake KDS for p until the test ends.
func Start(t testing.TB, p *sim.Platform) *Server {
	t.Helper()
	roots, err := x509.ParseCertificates(pemToDER(p.RootPEM()))
	if err != nil {
		t.Fatalf("kdstest: sim roots: %v", err)
	}
	s := &Server{platform: p, byPath: map[string]int{}, crlLife: 7 * 24 * time.Hour}
	for _, c := range roots {
		if c.Subject.CommonName == "ARK-"+p.ProductLine() {
			s.ark = c
		}
	}
	if s.ark == nil {
		t.Fatal("kdstest: no simulated ARK")
	}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// Client returns an HTTP client that dials the fake KDS for every host (the caller's host
// check is what keeps other hosts out) and trusts its certificate.
func (s *Server) Client() *http.Client {
	tr := s.srv.Client().Transport.(*http.Transport).Clone()
	addr := s.srv.Listener.Addr().String()
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	tr.TLSClientConfig.ServerName = "example.com" // httptest's certificate name
	tr.TLSClientConfig.MinVersion = tls.VersionTLS12
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// Requests returns the number of requests served (including throttled ones).
func (s *Server) Requests() int64 { return s.requests.Load() }

// PathRequests returns how many requests asked for path (kind: "vcek", "crl", "cert_chain").
func (s *Server) PathRequests(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byPath[kind]
}

// Revoke lists serial in the CRLs served from now on.
func (s *Server) Revoke(serial *big.Int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoked = append(s.revoked, serial)
}

// SetCRLLifetime sets how far after now the NextUpdate of CRLs served from now on lies.
func (s *Server) SetCRLLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.crlLife = d
}

// SignCRLsWith makes CRLs served from now on be signed by ca and key instead of the
// simulated ARK (a CRL the verifier must not trust).
func (s *Server) SignCRLsWith(ca *x509.Certificate, key crypto.Signer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.crlCA, s.crlKey = ca, key
}

// Throttle answers the next len(retryAfter) requests with 429 and these Retry-After values
// ("" sends none).
func (s *Server) Throttle(retryAfter ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle = append(s.throttle, retryAfter...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	if len(s.throttle) > 0 {
		ra := s.throttle[0]
		s.throttle = s.throttle[1:]
		s.mu.Unlock()
		if ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		http.Error(w, "Too Many Requests", http.StatusTooManyRequests)
		return
	}
	s.mu.Unlock()

	line := s.platform.ProductLine()
	prefix := "/vcek/v1/" + line + "/"
	if !strings.HasPrefix(r.URL.Path, prefix) {
		http.NotFound(w, r)
		return
	}
	switch rest := strings.TrimPrefix(r.URL.Path, prefix); rest {
	case "crl":
		s.count("crl")
		der, err := s.crl()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		_, _ = w.Write(der)
	case "cert_chain":
		s.count("cert_chain")
		_, _ = w.Write(s.platform.RootPEM())
	default:
		s.count("vcek")
		chip := s.platform.ChipID()
		if rest != hex.EncodeToString(chip[:]) {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		spl := func(k string) uint8 { n, _ := strconv.ParseUint(q.Get(k), 10, 8); return uint8(n) }
		tcb := kds.TCBParts{BlSpl: spl("blSPL"), TeeSpl: spl("teeSPL"), SnpSpl: spl("snpSPL"), UcodeSpl: spl("ucodeSPL")}
		_, chain, err := s.platform.Report(sim.Options{TCB: tcb})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/x-x509-ca-cert")
		_, _ = w.Write(chain.VCEK)
	}
}

func (s *Server) count(kind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byPath[kind]++
}

// crl issues a CRL of the revoked serials, signed by the simulated ARK as AMD's are.
func (s *Server) crl() ([]byte, error) {
	s.mu.Lock()
	var entries []x509.RevocationListEntry
	for _, sn := range s.revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: sn, RevocationTime: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)})
	}
	life := s.crlLife
	var ca *x509.Certificate = s.ark
	var key crypto.Signer = data.ARKPrivateKey
	alg := x509.SHA384WithRSAPSS
	if s.crlCA != nil {
		ca, key, alg = s.crlCA, s.crlKey, 0
	}
	s.mu.Unlock()
	now := time.Now()
	tmpl := &x509.RevocationList{
		SignatureAlgorithm:        alg,
		RevokedCertificateEntries: entries,
		Number:                    big.NewInt(now.UnixNano()),
		ThisUpdate:                now.Add(-time.Hour),
		NextUpdate:                now.Add(life),
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca, key)
	if err != nil {
		return nil, fmt.Errorf("kdstest: crl: %w", err)
	}
	return der, nil
}

func pemToDER(pemBytes []byte) []byte {
	var out []byte
	for {
		var blk *pem.Block
		if blk, pemBytes = pem.Decode(pemBytes); blk == nil {
			return out
		}
		out = append(out, blk.Bytes...)
	}
}
