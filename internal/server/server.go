// Package server is cvault's one HTTPS front door: it routes by host
// (key vaults at {vault}.{vault-domain}) and by path (identity, ARM,
// managed identity, attestation), and runs every request through the same
// middleware — request ids, api-version checks, bearer authentication for
// the route's audience, Azure's error envelope, one access-log line and
// Prometheus metrics. Services plug in as route tables (package route).
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cvault/cvault/internal/authn"
	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/route"
	"github.com/cvault/cvault/internal/store"
)

// Config wires the server.
type Config struct {
	// BaseURL is the public base URL, the only source of absolute URLs.
	BaseURL *url.URL
	// VaultDomain is the parent domain of vault hosts (default vault.localhost).
	VaultDomain string
	Store       store.Store
	Logger      *slog.Logger
	// Authenticator verifies bearer tokens; nil answers 401 to every bearer route.
	Authenticator authn.Authenticator
	// VaultTenant returns the tenant of a vault for the 401 challenge; nil or
	// an error answers 404 VaultNotFound.
	VaultTenant func(ctx context.Context, vault string) (string, error)
	Routes      []route.Route
	// Registry receives the server's metrics (nil: a new registry).
	Registry *prometheus.Registry
}

// Server is the HTTP handler of cvault.
type Server struct {
	cfg       Config
	main      *router
	vault     *router
	audiences map[route.Service][]string
	vaultRes  string // the key vault challenge resource
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	metrics   http.Handler
}

// New builds the server from its routes.
func New(cfg Config) (*Server, error) {
	if cfg.BaseURL == nil || cfg.Store == nil || cfg.Logger == nil {
		return nil, errors.New("server: BaseURL, Store and Logger are required")
	}
	if cfg.VaultDomain == "" {
		cfg.VaultDomain = "vault.localhost"
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, main: newRouter(), vault: newRouter()}
	s.vaultRes = VaultResource(cfg.BaseURL, cfg.VaultDomain)
	base := strings.TrimRight(cfg.BaseURL.String(), "/")
	s.audiences = map[route.Service][]string{
		route.ARM: {base, base + "/", "https://management.azure.com", "https://management.azure.com/",
			"https://management.core.windows.net", "https://management.core.windows.net/"},
		route.KeyVault: {s.vaultRes, s.vaultRes + "/", "https://vault.azure.net", "https://vault.azure.net/"},
		route.Graph:    {"https://graph.microsoft.com", "https://graph.microsoft.com/", base + "/graph"},
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cvault_http_requests_total", Help: "HTTP requests by route and status code.",
	}, []string{"route", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "cvault_http_request_duration_seconds", Help: "HTTP request latency by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route"})
	if err := cfg.Registry.Register(s.requests); err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}
	if err := cfg.Registry.Register(s.latency); err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}
	s.metrics = promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{})
	routes := append(s.builtin(), cfg.Routes...)
	for _, r := range routes {
		rt := s.main
		if r.Host == route.Vault {
			rt = s.vault
		}
		if err := rt.add(r); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// VaultResource is the key vault audience and challenge resource:
// https://{domain}[:port] (Azure: https://vault.azure.net for hosts
// {vault}.vault.azure.net), which passes azkeys' suffix check
// (host ends with "." + resource host) for every {vault}.{domain}[:port].
func VaultResource(base *url.URL, domain string) string {
	r := "https://" + domain
	if p := base.Port(); p != "" && p != "443" {
		r += ":" + p
	}
	return r
}

// Audiences returns the audiences bearer tokens may carry for a service.
func (s *Server) Audiences(svc route.Service) []string { return s.audiences[svc] }

func (s *Server) builtin() []route.Route {
	return []route.Route{
		{Method: "GET", Pattern: "/healthz", Auth: route.Public, Service: route.Health,
			Handler: func(w http.ResponseWriter, r *http.Request) error {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				_, err := w.Write([]byte("ok\n"))
				return err
			}},
		{Method: "GET", Pattern: "/readyz", Auth: route.Public, Service: route.Health,
			Handler: func(w http.ResponseWriter, r *http.Request) error {
				ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
				defer cancel()
				if err := s.cfg.Store.Ping(ctx); err != nil {
					return azure.Errorf(http.StatusServiceUnavailable, "StoreUnavailable", "The store is not reachable.").Wrap(err)
				}
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				_, err := w.Write([]byte("ready\n"))
				return err
			}},
		{Method: "GET", Pattern: "/metrics", Auth: route.Public, Service: route.Health,
			Handler: func(w http.ResponseWriter, r *http.Request) error {
				s.metrics.ServeHTTP(w, r)
				return nil
			}},
	}
}

// Routes returns every route the server serves (for the authorization matrix).
func (s *Server) Routes() []route.Route { return append(s.builtin(), s.cfg.Routes...) }

var vaultNameRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$`)

// ServeHTTP dispatches by host, then path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rid := newRequestID()
	ctx := route.WithLogAttrs(r.Context())
	rw := &statusWriter{ResponseWriter: w}
	w.Header().Set("x-ms-request-id", rid)
	if c := r.Header.Get("x-ms-client-request-id"); c != "" && len(c) <= 256 {
		w.Header().Set("x-ms-client-request-id", c)
	}
	name := "unmatched"
	defer func() {
		if p := recover(); p != nil {
			s.cfg.Logger.Error("panic", "request_id", rid, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			if !rw.wrote {
				azure.WriteError(rw, rid, errors.New("panic"))
			}
		}
		s.finish(ctx, r, rw, name, rid, start)
	}()

	rt, path := s.main, r.URL.Path
	if v, ok := s.vaultHost(r.Host); ok {
		rt = s.vault
		ctx = route.WithVault(ctx, v)
	} else if rest, ok := strings.CutPrefix(path, "/vaults/"); ok {
		v, p, _ := strings.Cut(rest, "/")
		if vaultNameRE.MatchString(v) {
			rt, path = s.vault, "/"+p
			ctx = route.WithVault(ctx, strings.ToLower(v))
		}
	}
	r = r.WithContext(ctx)
	n, vals := rt.match(path)
	if n == nil {
		azure.WriteError(rw, rid, azure.Errorf(http.StatusNotFound, azure.CodeNotFound, "No route matches %s %s.", r.Method, path))
		return
	}
	e := n.methods[r.Method]
	if e == nil && r.Method == http.MethodHead {
		e = n.methods[http.MethodGet]
	}
	if e == nil {
		rw.Header().Set("Allow", n.allowed())
		azure.WriteError(rw, rid, azure.Errorf(http.StatusMethodNotAllowed, azure.CodeMethodNotAllowed,
			"The method %s is not allowed here; allowed: %s.", r.Method, n.allowed()))
		return
	}
	name = e.route.Name()
	for i, v := range vals {
		r.SetPathValue(e.names[i], v)
	}
	if err := s.serve(rw, r, e.route); err != nil {
		ae := azure.WriteError(rw, rid, err)
		if ae.Status >= 500 {
			s.cfg.Logger.Error("request failed", "request_id", rid, "route", name, "err", ae)
		}
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, rt route.Route) error {
	if !rt.APIVersions.Empty() {
		if err := azure.CheckAPIVersion(r, rt.APIVersions); err != nil {
			return err
		}
	}
	if rt.Auth == route.Bearer {
		p, err := s.authenticate(r, rt)
		if err != nil {
			return err
		}
		r = r.WithContext(authn.NewContext(r.Context(), p))
		route.AddLogAttrs(r.Context(), slog.String("tenant", p.TenantID), slog.String("oid", p.ObjectID))
	}
	return rt.Handler(w, r)
}

func (s *Server) authenticate(r *http.Request, rt route.Route) (*authn.Principal, error) {
	token, hasToken := bearer(r)
	var err error
	var p *authn.Principal
	switch {
	case !hasToken:
		err = authn.ErrNoToken
	case s.cfg.Authenticator == nil:
		err = fmt.Errorf("%w: no authenticator configured", authn.ErrInvalidToken)
	default:
		p, err = s.cfg.Authenticator.Authenticate(r.Context(), token, s.audiences[rt.Service])
	}
	if err == nil {
		return p, nil
	}
	if rt.Service == route.KeyVault {
		return nil, s.vaultChallenge(r, err)
	}
	return nil, armAuthError(err)
}

func armAuthError(err error) error {
	e := &azure.Error{Status: http.StatusUnauthorized, Err: err, Header: http.Header{}}
	switch {
	case errors.Is(err, authn.ErrNoToken):
		e.Code, e.Message = azure.CodeAuthenticationFailed, "Authentication failed. The 'Authorization' header is missing."
		e.Header.Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="The authentication failed because of missing 'Authorization' header."`)
	case errors.Is(err, authn.ErrExpired):
		e.Code, e.Message = "ExpiredAuthenticationToken", "The access token expiry UTC time is earlier than current UTC time."
		e.Header.Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="The access token has expired."`)
	case errors.Is(err, authn.ErrAudience):
		e.Code, e.Message = "InvalidAuthenticationTokenAudience", "The access token has been obtained for wrong audience or resource."
		e.Header.Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="The access token has an invalid audience."`)
	default:
		e.Code, e.Message = azure.CodeInvalidAuthToken, "The access token is invalid."
		e.Header.Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="The access token is invalid."`)
	}
	return e
}

// vaultChallenge answers Key Vault's 401 with the challenge azkeys follows:
// authorization = the vault tenant's authority, resource = the vault audience.
func (s *Server) vaultChallenge(r *http.Request, cause error) error {
	vault := route.VaultName(r.Context())
	tenant := ""
	if s.cfg.VaultTenant != nil {
		t, err := s.cfg.VaultTenant(r.Context(), vault)
		if err == nil {
			tenant = t
		}
	}
	if tenant == "" {
		return azure.Errorf(http.StatusNotFound, "VaultNotFound", "The vault '%s' does not exist.", vault)
	}
	e := &azure.Error{Status: http.StatusUnauthorized, Code: azure.CodeUnauthorized, Err: cause, Header: http.Header{}}
	switch {
	case errors.Is(cause, authn.ErrNoToken):
		e.Message = "AKV10000: Request is missing a Bearer or PoP token."
	case errors.Is(cause, authn.ErrExpired):
		e.Message = "AKV10032: Token is expired."
	case errors.Is(cause, authn.ErrAudience):
		e.Message = "AKV10022: Invalid audience."
	default:
		e.Message = "AKV10021: Token is not valid for this vault (signature, issuer or tenant)."
	}
	authority := strings.TrimRight(s.cfg.BaseURL.String(), "/") + "/" + tenant
	e.Header.Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization="%s", resource="%s"`, authority, s.vaultRes))
	return e
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// vaultHost reports whether host addresses a vault: {vault}.{vault-domain}[:port].
func (s *Server) vaultHost(host string) (string, bool) {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	v, ok := strings.CutSuffix(h, "."+s.cfg.VaultDomain)
	if !ok || !vaultNameRE.MatchString(v) {
		return "", false
	}
	return v, true
}

func (s *Server) finish(ctx context.Context, r *http.Request, rw *statusWriter, name, rid string, start time.Time) {
	d := time.Since(start)
	status := rw.status
	if status == 0 {
		status = http.StatusOK
	}
	s.requests.WithLabelValues(name, statusText(status)).Inc()
	s.latency.WithLabelValues(name).Observe(d.Seconds())
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	if name == "GET /healthz" || name == "GET /metrics" {
		level = slog.LevelDebug // probes would drown the log
	}
	if !s.cfg.Logger.Enabled(ctx, level) {
		return
	}
	var buf [16]slog.Attr // one access line's attributes, without growing
	attrs := append(buf[:0],
		slog.String("method", r.Method), slog.String("route", name), slog.Int("status", status),
		slog.Duration("duration", d), slog.String("request_id", rid),
	)
	if v := route.VaultName(ctx); v != "" {
		attrs = append(attrs, slog.String("vault", v))
	}
	attrs = append(attrs, route.LogAttrs(ctx)...)
	s.cfg.Logger.LogAttrs(ctx, level, "request", attrs...)
}

var statusTexts = func() map[int]string {
	m := map[int]string{}
	for c := 100; c < 600; c++ {
		m[c] = fmt.Sprint(c)
	}
	return m
}()

func statusText(c int) string {
	if t, ok := statusTexts[c]; ok {
		return t
	}
	return fmt.Sprint(c)
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte // 8-4-4-4-12, encoded in place: one allocation (the string)
	hex.Encode(out[0:8], b[0:4])
	hex.Encode(out[9:13], b[4:6])
	hex.Encode(out[14:18], b[6:8])
	hex.Encode(out[19:23], b[8:10])
	hex.Encode(out[24:], b[10:])
	out[8], out[13], out[18], out[23] = '-', '-', '-', '-'
	return string(out[:])
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
