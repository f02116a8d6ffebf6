// Package kdscache is the attestation service's only way onto the network (issue 6, seed 002):
// a go-sev-guest trust.HTTPSGetter that fetches VCEK certificates, certificate chains and CRLs
// from AMD's Key Distribution Service and keeps every answer in the store, so all servers on
// one database share it (AMD rate-limits KDS). Certificates are immutable per URL and kept
// forever; a CRL is refetched once its NextUpdate has passed. Only https://kdsintf.amd.com
// is ever contacted; any other URL is refused before a request is made.
package kdscache

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/cvault/cvault/internal/store"
)

// Kind is the store kind of cached KDS answers (key: hex SHA-256 of the URL).
const Kind = "kdscache"

// Host is the only host requests go to.
const Host = "kdsintf.amd.com"

var (
	// ErrHost: the URL is not an https://kdsintf.amd.com KDS path; nothing was sent.
	ErrHost = errors.New("kdscache: not an AMD KDS URL")
	// ErrRateLimited: KDS kept answering 429/503 beyond the retry bounds.
	ErrRateLimited = errors.New("kdscache: AMD KDS rate limit")
	// ErrStatus: KDS answered with a non-retryable HTTP status (404 for an unknown chip or TCB).
	ErrStatus = errors.New("kdscache: AMD KDS refused the request")
)

// Doer sends one HTTP request (an *http.Client). Tests inject a client dialing a fake KDS.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Config are the Getter's dependencies and bounds. Zero values take the defaults noted.
type Config struct {
	Store store.Store
	// Client is the network client; nil means an http.Client with Timeout.
	Client Doer
	// Now is the clock CRL freshness is judged by; nil means time.Now.
	Now func() time.Time
	// Timeout bounds each attempt (default 20 s).
	Timeout time.Duration
	// MaxAttempts bounds the attempts per fetch (default 4).
	MaxAttempts int
	// MaxWait is the longest single wait between attempts: a longer Retry-After gives up at
	// once with ErrRateLimited rather than hold a request (default 30 s).
	MaxWait time.Duration
	// FailureBackoff is how long a failed CRL refresh is not retried while a stale copy is
	// served (default 5 min).
	FailureBackoff time.Duration
	// Sleep waits d or until ctx ends; nil means a timer. Tests record the waits.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Getter is the caching KDS client. Safe for concurrent use.
type Getter struct {
	cfg      Config
	group    singleflight.Group
	requests atomic.Int64

	mu  sync.Mutex
	mem map[string]entry // url → answer, a copy of the store's to spare a read per attestation
}

// entry is the stored record.
type entry struct {
	URL     string    `json:"url"`
	Body    []byte    `json:"body"`
	Fetched time.Time `json:"fetched"`
	// NextUpdate is set for CRLs: the answer is stale after it.
	NextUpdate time.Time `json:"nextUpdate,omitzero"`
	// retryAt (memory only) holds back refetching after a failed refresh.
	retryAt time.Time
}

const memMax = 512

// New returns a Getter over cfg.Store.
func New(cfg Config) (*Getter, error) {
	if cfg.Store == nil {
		return nil, errors.New("kdscache: a store is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 20 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 4
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 30 * time.Second
	}
	if cfg.FailureBackoff <= 0 {
		cfg.FailureBackoff = 5 * time.Minute
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	return &Getter{cfg: cfg, mem: map[string]entry{}}, nil
}

// Requests returns how many HTTP requests the Getter has sent (attempts, not fetches).
func (g *Getter) Requests() int64 { return g.requests.Load() }

// Get implements trust.HTTPSGetter.
func (g *Getter) Get(u string) ([]byte, error) { return g.GetContext(context.Background(), u) }

// GetContext implements trust.ContextHTTPSGetter: the cached answer for u, fetched from AMD
// KDS (and stored) when absent or, for a CRL, past its NextUpdate. When a CRL refresh fails,
// the stale CRL is returned: revocations only accumulate, so it still refuses what it lists.
func (g *Getter) GetContext(ctx context.Context, u string) ([]byte, error) {
	isCRL, err := checkURL(u)
	if err != nil {
		return nil, err
	}
	now := g.cfg.Now()
	g.mu.Lock()
	e, ok := g.mem[u]
	g.mu.Unlock()
	if ok && (fresh(e, now) || now.Before(e.retryAt)) {
		return e.Body, nil
	}
	// Concurrent misses of one URL share a single store read and fetch (under the first
	// caller's context).
	v, err, _ := g.group.Do(u, func() (any, error) { return g.load(ctx, u, isCRL) })
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

func fresh(e entry, now time.Time) bool { return e.NextUpdate.IsZero() || now.Before(e.NextUpdate) }

// load reads the store, then the network, for u (one caller per URL at a time).
func (g *Getter) load(ctx context.Context, u string, isCRL bool) ([]byte, error) {
	key := storeKey(u)
	var stored *entry
	rec, err := g.cfg.Store.Get(ctx, Kind, key)
	switch {
	case err == nil:
		var e entry
		if err := json.Unmarshal(rec.Value, &e); err != nil {
			return nil, fmt.Errorf("kdscache: stored %s: %w", u, err)
		}
		if e.URL == u { // the key is a hash: a mismatch would be a collision, treat as absent
			if fresh(e, g.cfg.Now()) {
				g.remember(u, e)
				return e.Body, nil
			}
			stored = &e
		}
	case !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("kdscache: read %s: %w", u, err)
	}

	body, err := g.fetch(ctx, u)
	var e entry
	if err == nil {
		e = entry{URL: u, Body: body, Fetched: g.cfg.Now()}
		err = validate(&e, isCRL)
	}
	if err != nil {
		if stored != nil && ctx.Err() == nil {
			// A stale CRL beats none; hold back refetching for a while.
			stale := *stored
			stale.retryAt = g.cfg.Now().Add(g.cfg.FailureBackoff)
			g.remember(u, stale)
			return stale.Body, nil
		}
		return nil, err
	}
	value, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("kdscache: encode %s: %w", u, err)
	}
	if _, err := store.Put(ctx, g.cfg.Store, Kind, key, value, store.Any); err != nil {
		return nil, fmt.Errorf("kdscache: store %s: %w", u, err)
	}
	g.remember(u, e)
	return e.Body, nil
}

func (g *Getter) remember(u string, e entry) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.mem) >= memMax {
		clear(g.mem)
	}
	g.mem[u] = e
}

// validate refuses to cache what is not a certificate, chain or CRL, and dates a CRL.
func validate(e *entry, isCRL bool) error {
	switch {
	case isCRL:
		crl, err := x509.ParseRevocationList(e.Body)
		if err != nil {
			return fmt.Errorf("kdscache: %s is not a CRL: %w", e.URL, err)
		}
		e.NextUpdate = crl.NextUpdate
		if e.NextUpdate.IsZero() {
			// No NextUpdate: refresh daily rather than keep it forever.
			e.NextUpdate = e.Fetched.Add(24 * time.Hour)
		}
	case strings.HasSuffix(pathOf(e.URL), "/cert_chain"):
		if blk, _ := pem.Decode(e.Body); blk == nil || blk.Type != "CERTIFICATE" {
			return fmt.Errorf("kdscache: %s is not a PEM certificate chain", e.URL)
		}
	default:
		if _, err := x509.ParseCertificate(e.Body); err != nil {
			return fmt.Errorf("kdscache: %s is not a DER certificate: %w", e.URL, err)
		}
	}
	return nil
}

// fetch GETs u with bounded attempts: 429/503 wait for Retry-After (or back off), network
// errors and 5xx back off exponentially, other statuses fail at once.
func (g *Getter) fetch(ctx context.Context, u string) ([]byte, error) {
	backoff := 500 * time.Millisecond
	var lastErr error
	for attempt := 1; ; attempt++ {
		body, wait, err := g.attempt(ctx, u)
		if err == nil {
			return body, nil
		}
		lastErr = err
		if wait < 0 || attempt >= g.cfg.MaxAttempts || ctx.Err() != nil {
			return nil, lastErr
		}
		if wait == 0 {
			wait, backoff = backoff, backoff*2
		}
		if wait > g.cfg.MaxWait {
			return nil, fmt.Errorf("%w: Retry-After %s exceeds the %s bound: %w", ErrRateLimited, wait, g.cfg.MaxWait, lastErr)
		}
		if err := g.cfg.Sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("kdscache: GET %s: %w (after %w)", u, err, lastErr)
		}
	}
}

// attempt sends one request. wait < 0: do not retry; 0: retry after backoff; > 0: after wait.
func (g *Getter) attempt(ctx context.Context, u string) (body []byte, wait time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, -1, fmt.Errorf("kdscache: %w", err)
	}
	g.requests.Add(1)
	resp, err := g.cfg.Client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("kdscache: GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		const limit = 1 << 20 // KDS answers are a few KiB
		b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
		if err != nil {
			return nil, 0, fmt.Errorf("kdscache: GET %s: %w", u, err)
		}
		if len(b) > limit {
			return nil, -1, fmt.Errorf("kdscache: GET %s: answer over %d bytes", u, limit)
		}
		return b, 0, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		return nil, retryAfter(resp.Header.Get("Retry-After"), g.cfg.Now()), fmt.Errorf("%w: GET %s: %s", ErrRateLimited, u, resp.Status)
	case resp.StatusCode >= 500:
		return nil, 0, fmt.Errorf("%w: GET %s: %s", ErrStatus, u, resp.Status)
	default:
		return nil, -1, fmt.Errorf("%w: GET %s: %s", ErrStatus, u, resp.Status)
	}
}

// retryAfter parses Retry-After (delay-seconds or HTTP-date); 0 when absent or unparsable.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		if s == 0 {
			return time.Millisecond // "now", but keep it distinct from "absent"
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
		return time.Millisecond
	}
	return 0
}

// checkURL admits only https://kdsintf.amd.com/{vcek,vlek}/v1/… and says whether it is a CRL.
func checkURL(u string) (bool, error) {
	p, err := url.Parse(u)
	if err != nil {
		return false, fmt.Errorf("%w: %q: %w", ErrHost, u, err)
	}
	if p.Scheme != "https" || p.Host != Host || p.User != nil || p.Fragment != "" ||
		!(strings.HasPrefix(p.Path, "/vcek/v1/") || strings.HasPrefix(p.Path, "/vlek/v1/")) {
		return false, fmt.Errorf("%w: %q (only https://%s/vcek/v1/… and /vlek/v1/…)", ErrHost, u, Host)
	}
	return strings.HasSuffix(p.Path, "/crl"), nil
}

func pathOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return p.Path
}

func storeKey(u string) string {
	sum := sha256.Sum256([]byte(u))
	return hex.EncodeToString(sum[:])
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
