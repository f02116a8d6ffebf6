package imdsproxy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cvault/cvault/internal/guest/imdsproxy"
)

const secret = "s3cret-value-never-logged"

// upstream records what reaches cvault's managed-identity endpoint.
type upstream struct {
	path, header string
	query        map[string][]string
}

func newProxy(t *testing.T, status int) (*imdsproxy.Proxy, *upstream, *bytes.Buffer) {
	t.Helper()
	up := &upstream{}
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up.path, up.header, up.query = r.URL.Path, r.Header.Get("X-IDENTITY-HEADER"), r.URL.Query()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"access_token":"tok","expires_on":"1767229200","resource":"r","token_type":"Bearer"}`))
	}))
	t.Cleanup(ts.Close)
	var logs bytes.Buffer
	p, err := imdsproxy.New(imdsproxy.Config{Server: ts.URL, Client: ts.Client(),
		Secret: func() (string, error) { return secret, nil }, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return p, up, &logs
}

func TestProxyForwardsWithSecret(t *testing.T) {
	p, up, logs := newProxy(t, http.StatusOK)
	req := httptest.NewRequest(http.MethodGet, "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net&client_id=c1&evil=1", nil)
	req.Header.Set("Metadata", "true")
	req.Header.Set("X-IDENTITY-HEADER", "caller-chosen") // replaced, never relayed
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"access_token":"tok"`) {
		t.Fatalf("answer = %d %s", rec.Code, rec.Body)
	}
	if up.path != imdsproxy.TokenPath || up.header != secret {
		t.Errorf("upstream got path %q, secret %q", up.path, up.header)
	}
	if up.query["resource"][0] != "https://vault.azure.net" || up.query["client_id"][0] != "c1" || up.query["api-version"][0] != "2018-02-01" {
		t.Errorf("upstream query = %v", up.query)
	}
	if _, ok := up.query["evil"]; ok {
		t.Errorf("unknown parameter forwarded: %v", up.query)
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("secret in logs: %s", logs)
	}
}

func TestProxyPassesErrorsThrough(t *testing.T) {
	p, _, _ := newProxy(t, http.StatusBadRequest)
	req := httptest.NewRequest(http.MethodGet, imdsproxy.TokenPath+"?resource=x", nil)
	req.Header.Set("Metadata", "true")
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status = %d", rec.Code)
	}
}

func TestProxyRefuses(t *testing.T) {
	p, up, _ := newProxy(t, http.StatusOK)
	for _, tc := range []struct {
		name, method, path string
		header             map[string]string
		want               int
	}{
		{"no metadata header", "GET", imdsproxy.TokenPath, nil, 400},
		{"metadata false", "GET", imdsproxy.TokenPath, map[string]string{"Metadata": "false"}, 400},
		{"forwarded", "GET", imdsproxy.TokenPath, map[string]string{"Metadata": "true", "X-Forwarded-For": "10.0.0.1"}, 400},
		{"other path", "GET", "/metadata/instance", map[string]string{"Metadata": "true"}, 404},
		{"post", "POST", imdsproxy.TokenPath, map[string]string{"Metadata": "true"}, 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up.path = ""
			req := httptest.NewRequest(tc.method, tc.path+"?resource=x&api-version=2018-02-01", nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, req)
			var body struct{ Error, ErrorDescription string }
			_ = json.Unmarshal(rec.Body.Bytes(), &body)
			if rec.Code != tc.want || body.Error == "" {
				t.Errorf("answer = %d %s, want %d with an IMDS error", rec.Code, rec.Body, tc.want)
			}
			if up.path != "" {
				t.Errorf("refused request reached upstream")
			}
		})
	}
}

func TestFileSecret(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := imdsproxy.FileSecret(good)(); err != nil || s != secret {
		t.Fatalf("FileSecret = %q, %v", s, err)
	}
	loose := filepath.Join(dir, "loose")
	if err := os.WriteFile(loose, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := imdsproxy.FileSecret(loose)(); !errors.Is(err, imdsproxy.ErrSecretFileMode) {
		t.Errorf("0644 file: err = %v", err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := imdsproxy.FileSecret(empty)(); !errors.Is(err, imdsproxy.ErrEmptySecret) {
		t.Errorf("empty file: err = %v", err)
	}
	if _, err := imdsproxy.FileSecret(filepath.Join(dir, "absent"))(); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("absent file: err = %v", err)
	}
}

func TestProxySecretUnavailable(t *testing.T) {
	p, err := imdsproxy.New(imdsproxy.Config{Server: "https://localhost:1", Client: http.DefaultClient,
		Secret: func() (string, error) { return "", errors.New("gone") }})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, imdsproxy.TokenPath+"?resource=x", nil)
	req.Header.Set("Metadata", "true")
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status = %d", rec.Code)
	}
}

func TestNewRejectsHTTP(t *testing.T) {
	if _, err := imdsproxy.New(imdsproxy.Config{Server: "http://cvault:8443", Client: http.DefaultClient,
		Secret: func() (string, error) { return "", nil }}); err == nil {
		t.Fatal("plain-HTTP upstream accepted (the secret would travel in clear)")
	}
}
