package kdscache_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-sev-guest/kds"

	"github.com/cvault/cvault/internal/attest/kdscache"
	"github.com/cvault/cvault/internal/attest/kdscache/kdstest"
	"github.com/cvault/cvault/internal/attest/snp"
	"github.com/cvault/cvault/internal/sim"
	"github.com/cvault/cvault/internal/store"
	"github.com/cvault/cvault/internal/store/embedded/embeddedtest"
	"github.com/cvault/cvault/internal/store/postgres"
	"github.com/cvault/cvault/internal/store/postgres/pgtest"
)

var simOnce = sync.OnceValues(func() (*sim.Platform, error) { return sim.New(sim.Config{}) })

func platform(t testing.TB) *sim.Platform {
	t.Helper()
	p, err := simOnce()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func simRoots(t testing.TB, p *sim.Platform) []snp.Root {
	t.Helper()
	roots, err := snp.ParseRoots(p.RootPEM(), true)
	if err != nil {
		t.Fatal(err)
	}
	return roots
}

// evidenceWithoutVCEK is a v3 simulated report (its CPUID names the product line) sent with
// no certificates at all, as a bare SNP client would.
func evidenceWithoutVCEK(t testing.TB, p *sim.Platform) (*snp.Evidence, *x509.Certificate) {
	t.Helper()
	raw, chain, err := p.Report(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	vcek, err := x509.ParseCertificate(chain.VCEK)
	if err != nil {
		t.Fatal(err)
	}
	return &snp.Evidence{Report: raw}, vcek
}

func newGetter(t testing.TB, st store.Store, client kdscache.Doer, mod ...func(*kdscache.Config)) *kdscache.Getter {
	t.Helper()
	cfg := kdscache.Config{Store: st, Client: client}
	for _, m := range mod {
		m(&cfg)
	}
	g, err := kdscache.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func wantCheck(t *testing.T, err error, check string) *snp.EvidenceError {
	t.Helper()
	var ee *snp.EvidenceError
	if !errors.As(err, &ee) || ee.Check != check {
		t.Fatalf("error = %v, want *EvidenceError{Check: %q}", err, check)
	}
	return ee
}

var stores = []struct {
	name string
	open func(t *testing.T) store.Store
}{
	{"embedded", func(t *testing.T) store.Store { return embeddedtest.Open(t) }},
	{"postgres", func(t *testing.T) store.Store { return pgtest.Open(t, postgres.Options{}) }},
}

// TestVerifyFetchesMissingVCEK: a report sent without its VCEK verifies through the fake KDS;
// the VCEK and CRL land in the store; later verifications, on this server or a second one on
// the same database, make no network call.
func TestVerifyFetchesMissingVCEK(t *testing.T) {
	p := platform(t)
	for _, tc := range stores {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.open(t)
			fake := kdstest.Start(t, p)
			server1 := newGetter(t, st, fake.Client())
			ev, _ := evidenceWithoutVCEK(t, p)
			o := snp.Options{ExtraRoots: simRoots(t, p), Getter: server1, Cache: snp.NewChainCache(8)}

			v, err := snp.Verify(t.Context(), ev, o)
			if err != nil {
				t.Fatalf("Verify via fake KDS = %v", err)
			}
			if !v.Simulated || !v.RevocationChecked {
				t.Errorf("Verified: simulated %v, revocation checked %v; want both", v.Simulated, v.RevocationChecked)
			}
			if got := [2]int{fake.PathRequests("vcek"), fake.PathRequests("crl")}; got != [2]int{1, 1} {
				t.Fatalf("KDS requests (vcek, crl) = %v, want [1 1]", got)
			}
			recs, err := st.List(t.Context(), kdscache.Kind, "", "", 0)
			if err != nil || len(recs) != 2 {
				t.Fatalf("store holds %d %s records (%v), want 2 (VCEK, CRL)", len(recs), kdscache.Kind, err)
			}

			// Same server, fresh chain cache: the VCEK and CRL come from the Getter's cache.
			o.Cache = snp.NewChainCache(8)
			if _, err := snp.Verify(t.Context(), ev, o); err != nil {
				t.Fatal(err)
			}
			// A second server on the same database: from the store, no fetch.
			server2 := newGetter(t, st, fake.Client())
			o2 := snp.Options{ExtraRoots: simRoots(t, p), Getter: server2}
			if v, err := snp.Verify(t.Context(), ev, o2); err != nil || !v.RevocationChecked {
				t.Fatalf("second server: Verify = %v (revocation checked %v)", err, v != nil && v.RevocationChecked)
			}
			if n := fake.Requests(); n != 2 {
				t.Errorf("KDS served %d requests in all, want 2", n)
			}
			if n := server2.Requests(); n != 0 {
				t.Errorf("second server sent %d requests, want 0", n)
			}
		})
	}
}

func TestRevoked(t *testing.T) {
	p := platform(t)
	ask := simRoots(t, p)[0].ASK
	for _, tc := range []struct {
		name   string
		serial func(vcek *x509.Certificate) *x509.Certificate
		seen   string
	}{
		{"vcek", func(vcek *x509.Certificate) *x509.Certificate { return vcek }, "VCEK serial"},
		{"ask", func(*x509.Certificate) *x509.Certificate { return ask }, "ASK serial"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := kdstest.Start(t, p)
			ev, vcek := evidenceWithoutVCEK(t, p)
			fake.Revoke(tc.serial(vcek).SerialNumber)
			g := newGetter(t, embeddedtest.Open(t), fake.Client())
			_, err := snp.Verify(t.Context(), ev, snp.Options{ExtraRoots: simRoots(t, p), Getter: g})
			ee := wantCheck(t, err, snp.CheckRevoked)
			if !strings.Contains(ee.Seen, tc.seen) {
				t.Errorf("Seen = %q, want it to name the %s", ee.Seen, tc.seen)
			}
		})
	}
}

// TestCRLOfOtherIssuer: a CRL not signed by the chain's ARK (as AMD's real CRL is for
// simulated evidence) leaves revocation unchecked; it neither refuses nor is trusted.
func TestCRLOfOtherIssuer(t *testing.T) {
	p := platform(t)
	fake := kdstest.Start(t, p)
	ev, vcek := evidenceWithoutVCEK(t, p)
	fake.Revoke(vcek.SerialNumber)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not AMD"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCRLSign | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	fake.SignCRLsWith(ca, key)
	g := newGetter(t, embeddedtest.Open(t), fake.Client())
	v, err := snp.Verify(t.Context(), ev, snp.Options{ExtraRoots: simRoots(t, p), Getter: g})
	if err != nil {
		t.Fatalf("Verify with a foreign CRL = %v, want success (revocation unchecked)", err)
	}
	if v.RevocationChecked {
		t.Error("RevocationChecked with a CRL not signed by the chain's ARK")
	}
}

func TestOfflineMissingVCEK(t *testing.T) {
	p := platform(t)
	ev, _ := evidenceWithoutVCEK(t, p)
	_, err := snp.Verify(t.Context(), ev, snp.Options{ExtraRoots: simRoots(t, p)})
	ee := wantCheck(t, err, snp.CheckCertificate)
	if !strings.Contains(ee.Expected, "VcekCertChain") || !strings.Contains(ee.Expected, "--amd-kds") {
		t.Errorf("offline error %q should say to send the VCEK or enable --amd-kds", ee.Expected)
	}
}

// failDoer fails the test if any request is sent.
type failDoer struct{ t *testing.T }

func (d failDoer) Do(r *http.Request) (*http.Response, error) {
	d.t.Errorf("request sent to %s", r.URL)
	return nil, errors.New("no network in tests")
}

func TestRefusesOtherHosts(t *testing.T) {
	g := newGetter(t, embeddedtest.Open(t), failDoer{t})
	for _, u := range []string{
		"https://example.com/vcek/v1/Milan/crl",
		"http://kdsintf.amd.com/vcek/v1/Milan/crl",
		"https://kdsintf.amd.com:8443/vcek/v1/Milan/crl",
		"https://user@kdsintf.amd.com/vcek/v1/Milan/crl",
		"https://kdsintf.amd.com.evil.example/vcek/v1/Milan/crl",
		"https://KDSINTF.AMD.COM.evil/vcek/v1/Milan/crl",
		"https://kdsintf.amd.com/other/path",
		"https://kdsintf.amd.com",
		"file:///etc/passwd",
		"::not a url",
	} {
		if _, err := g.GetContext(t.Context(), u); !errors.Is(err, kdscache.ErrHost) {
			t.Errorf("Get(%q) = %v, want ErrHost", u, err)
		}
	}
}

// sleeps records the waits the Getter asks for instead of waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(_ context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return nil
}

func (s *sleeps) get() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

func TestRetryAfter(t *testing.T) {
	p := platform(t)
	chip := p.ChipID()
	tcb, err := kds.ComposeTCBParts(sim.DefaultTCB())
	if err != nil {
		t.Fatal(err)
	}
	vcekURL := kds.VCEKCertURL("Milan", chip[:], tcb)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		throttle  []string
		wantErr   error
		wantSleep []time.Duration
		wantReqs  int64
	}{
		{"honoured", []string{"2", "1"}, nil, []time.Duration{2 * time.Second, time.Second}, 3},
		{"http-date", []string{now.Add(3 * time.Second).Format(http.TimeFormat)}, nil, []time.Duration{3 * time.Second}, 2},
		{"no header backs off", []string{""}, nil, []time.Duration{500 * time.Millisecond}, 2},
		{"attempts bounded", []string{"1", "1", "1", "1", "1"}, kdscache.ErrRateLimited, []time.Duration{time.Second, time.Second}, 3},
		{"wait bounded", []string{"3600"}, kdscache.ErrRateLimited, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := kdstest.Start(t, p)
			fake.Throttle(tc.throttle...)
			var s sleeps
			g := newGetter(t, embeddedtest.Open(t), fake.Client(), func(c *kdscache.Config) {
				c.Sleep, c.MaxAttempts, c.MaxWait = s.sleep, 3, time.Minute
				c.Now = func() time.Time { return now }
			})
			der, err := g.GetContext(t.Context(), vcekURL)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Get = %v, want %v", err, tc.wantErr)
			}
			if err == nil {
				if _, err := x509.ParseCertificate(der); err != nil {
					t.Errorf("answer is no certificate: %v", err)
				}
			}
			if got := s.get(); !equalDurations(got, tc.wantSleep) {
				t.Errorf("waits = %v, want %v", got, tc.wantSleep)
			}
			if n := fake.Requests(); n != tc.wantReqs {
				t.Errorf("KDS saw %d requests, want %d", n, tc.wantReqs)
			}
		})
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestCRLRefresh: a CRL is refetched once past its NextUpdate; when that refresh fails the
// stale CRL is served and the KDS is left alone for FailureBackoff.
func TestCRLRefresh(t *testing.T) {
	p := platform(t)
	fake := kdstest.Start(t, p)
	fake.SetCRLLifetime(time.Hour)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	var s sleeps
	g := newGetter(t, embeddedtest.Open(t), fake.Client(), func(c *kdscache.Config) {
		c.Now, c.Sleep, c.MaxAttempts, c.FailureBackoff = clock, s.sleep, 1, 10*time.Minute
	})
	crlURL := kds.CrlLinkByKey("Milan", 0)
	get := func() []byte {
		t.Helper()
		b, err := g.GetContext(t.Context(), crlURL)
		if err != nil {
			t.Fatalf("Get CRL = %v", err)
		}
		return b
	}
	first := get()
	get()
	if n := fake.PathRequests("crl"); n != 1 {
		t.Fatalf("CRL fetched %d times before NextUpdate, want 1", n)
	}
	advance(2 * time.Hour)
	if second := get(); string(second) == string(first) || fake.PathRequests("crl") != 2 {
		t.Fatalf("CRL past NextUpdate not refetched (fetches %d)", fake.PathRequests("crl"))
	}
	advance(2 * time.Hour)
	fake.Throttle("1")
	stale := get() // refresh fails (one attempt): the stale CRL is served
	before := fake.Requests()
	get()
	if fake.Requests() != before {
		t.Error("a failed refresh was retried within FailureBackoff")
	}
	if _, err := x509.ParseRevocationList(stale); err != nil {
		t.Errorf("stale answer is no CRL: %v", err)
	}
}

// TestNotFoundNotCached: a 404 (unknown chip) is an error and leaves nothing in the store.
func TestNotFoundNotCached(t *testing.T) {
	p := platform(t)
	fake := kdstest.Start(t, p)
	st := embeddedtest.Open(t)
	g := newGetter(t, st, fake.Client())
	u := kds.VCEKCertURL("Milan", make([]byte, 64), 0)
	if _, err := g.GetContext(t.Context(), u); !errors.Is(err, kdscache.ErrStatus) {
		t.Fatalf("Get(unknown chip) = %v, want ErrStatus", err)
	}
	if recs, _ := st.List(t.Context(), kdscache.Kind, "", "", 0); len(recs) != 0 {
		t.Errorf("store holds %d records after a 404", len(recs))
	}
	if n := fake.Requests(); n != 1 {
		t.Errorf("a 404 was retried: %d requests", n)
	}
}

// recordDoer answers 404 and records the URLs requested.
type recordDoer struct{ urls []string }

func (d *recordDoer) Do(r *http.Request) (*http.Response, error) {
	d.urls = append(d.urls, r.URL.String())
	return &http.Response{StatusCode: http.StatusNotFound, Status: "404 Not Found", Body: http.NoBody, Header: http.Header{}}, nil
}

// FuzzGetHost: whatever the URL, a request is only ever sent to https://kdsintf.amd.com.
func FuzzGetHost(f *testing.F) {
	for _, s := range []string{
		"https://kdsintf.amd.com/vcek/v1/Milan/crl",
		"https://kdsintf.amd.com/vlek/v1/Genoa/cert_chain",
		"https://kdsintf.amd.com@evil.example/vcek/v1/",
		"https://evil.example/vcek/v1/Milan/crl",
		"https://kdsintf.amd.com\\@evil/vcek/v1/x",
		"//kdsintf.amd.com/vcek/v1/x",
	} {
		f.Add(s)
	}
	st := embeddedtest.Open(f)
	f.Fuzz(func(t *testing.T, u string) {
		d := &recordDoer{}
		g := newGetter(t, st, d)
		_, _ = g.GetContext(t.Context(), u)
		for _, sent := range d.urls {
			if !strings.HasPrefix(sent, "https://kdsintf.amd.com/v") {
				t.Fatalf("Get(%q) sent a request to %q", u, sent)
			}
		}
	})
}
