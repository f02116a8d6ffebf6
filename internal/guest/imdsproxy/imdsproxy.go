// Package imdsproxy is the guest's Azure IMDS stand-in for managed-identity
// tokens (issue 3, design §4; seed 000's VM asks IMDS for its token): code
// in the VM that speaks the IMDS protocol — MSAL and azidentity hard-code
// http://169.254.169.254 and send no secret — reaches a local listener,
// which forwards the request to cvault's managed-identity endpoint with the
// VM's (or identity's) secret in X-IDENTITY-HEADER and passes the IMDS-shaped
// answer back unchanged. It refuses what IMDS refuses: requests without
// `Metadata: true` and proxied requests (X-Forwarded-For).
package imdsproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// TokenPath is IMDS's managed-identity token path.
const TokenPath = "/metadata/identity/oauth2/token"

// Errors of the secret file.
var (
	ErrSecretFileMode = errors.New("secret file is readable by group or others (want mode 0600)")
	ErrEmptySecret    = errors.New("secret file is empty")
)

// forwardedParams are the IMDS query parameters passed on; anything else
// is dropped so the proxy never widens what the guest can ask.
var forwardedParams = []string{"api-version", "resource", "client_id", "object_id", "msi_res_id", "mi_res_id", "principal_id"}

// maxAnswer bounds the upstream answer relayed to the caller.
const maxAnswer = 1 << 20

// Config configures a Proxy.
type Config struct {
	// Server is cvault's base URL (https://HOST:PORT).
	Server string
	// Secret returns the managed-identity secret; called per request so a
	// rotated secret file takes effect without a restart.
	Secret func() (string, error)
	// Client reaches Server (trusting its CA).
	Client *http.Client
	Logger *slog.Logger // nil: discard
}

// Proxy is an http.Handler answering IMDS token requests.
type Proxy struct {
	endpoint string
	secret   func() (string, error)
	client   *http.Client
	log      *slog.Logger
}

// New checks cfg and returns a Proxy.
func New(cfg Config) (*Proxy, error) {
	u, err := url.Parse(strings.TrimRight(cfg.Server, "/"))
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("imdsproxy: server %q: want https://HOST[:PORT]", cfg.Server)
	}
	if cfg.Secret == nil || cfg.Client == nil {
		return nil, errors.New("imdsproxy: Secret and Client are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Proxy{endpoint: u.String() + TokenPath, secret: cfg.Secret, client: cfg.Client, log: log}, nil
}

// FileSecret returns a Secret func reading path, which must not be
// readable by group or others (as ssh refuses loose private keys).
func FileSecret(path string) func() (string, error) {
	return func() (string, error) {
		fi, err := os.Stat(path)
		if err != nil {
			return "", fmt.Errorf("secret file: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("%s: %w", path, ErrSecretFileMode)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("secret file: %w", err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", fmt.Errorf("%s: %w", path, ErrEmptySecret)
		}
		return s, nil
	}
}

// ServeHTTP answers one IMDS request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path != TokenPath:
		imdsError(w, http.StatusNotFound, "not_found", "Path not found")
		return
	case r.Method != http.MethodGet:
		w.Header().Set("Allow", http.MethodGet)
		imdsError(w, http.StatusMethodNotAllowed, "method_not_allowed", "The request method is not allowed")
		return
	case len(r.Header.Values("X-Forwarded-For")) > 0:
		// IMDS serves only requests made from inside the VM, never relayed ones.
		imdsError(w, http.StatusBadRequest, "invalid_request", "Request cannot contain the X-Forwarded-For header")
		return
	case r.Header.Get("Metadata") != "true":
		imdsError(w, http.StatusBadRequest, "invalid_request", "Required metadata header not specified")
		return
	}
	secret, err := p.secret()
	if err != nil {
		p.log.Error("imds-proxy: managed-identity secret unavailable", "err", err)
		imdsError(w, http.StatusInternalServerError, "unknown_error", "The managed identity secret is unavailable")
		return
	}
	q := url.Values{}
	in := r.URL.Query()
	for _, k := range forwardedParams {
		if v, ok := in[k]; ok {
			q[k] = v
		}
	}
	if err := p.forward(r.Context(), w, q, secret); err != nil {
		p.log.Error("imds-proxy: upstream", "err", err)
		imdsError(w, http.StatusBadGateway, "bad_gateway", "The managed identity endpoint is unreachable")
	}
}

// forward relays the request; an error means nothing was written yet.
func (p *Proxy) forward(ctx context.Context, w http.ResponseWriter, q url.Values, secret string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.endpoint+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-IDENTITY-HEADER", secret)
	req.Header.Set("Metadata", "true")
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", p.endpoint, err) // the secret is a header, never in the URL
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("GET %s: %w", p.endpoint, err)
	}
	p.log.Info("imds-proxy", "resource", q.Get("resource"), "status", resp.StatusCode)
	for _, h := range []string{"Content-Type", "Cache-Control"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
	return nil
}

func imdsError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
