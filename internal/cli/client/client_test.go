package client

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseError(t *testing.T) {
	for _, tc := range []struct {
		body       string
		code, msg  string
		isNotFound bool
		status     int
	}{
		{`{"error":{"code":"ResourceGroupNotFound","message":"gone"}}`, "ResourceGroupNotFound", "gone", true, 404},
		{`{"error":"invalid_client","error_description":"AADSTS7000215: bad"}`, "invalid_client", "AADSTS7000215: bad", false, 400},
		{`not json`, "", "not json", false, 500},
		{``, "", "Forbidden", false, 403},
	} {
		err := parseError(tc.status, []byte(tc.body))
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code != tc.code || ae.Message != tc.msg {
			t.Errorf("parseError(%q) = %#v", tc.body, err)
		}
		if errors.Is(err, ErrNotFound) != tc.isNotFound {
			t.Errorf("parseError(%q): Is(ErrNotFound) wrong", tc.body)
		}
	}
}

func TestAuthorityBase(t *testing.T) {
	for in, want := range map[string]string{
		"https://localhost:8443/3c1f0000-0000-4000-8000-000000000000":  "https://localhost:8443",
		"https://localhost:8443/3c1f0000-0000-4000-8000-000000000000/": "https://localhost:8443",
		"https://cvault.example/prefix/tenant":                         "https://cvault.example/prefix",
	} {
		if got := authorityBase(in); got != want {
			t.Errorf("authorityBase(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestResolveCredentials(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "admin.json")
	creds := Credentials{TenantID: "t1", ClientID: "c1", ClientSecret: "zz-secret-zz", Authority: "https://h:1/t1"}
	if err := WriteCredentials(file, creds); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file mode %v", fi.Mode())
	}
	if err := WriteCredentials(file, creds); err == nil {
		t.Error("WriteCredentials overwrote an existing file")
	}
	for _, tc := range []struct {
		name string
		o    Options
		want string // client ID, or an error substring
		err  bool
	}{
		{"file", Options{CredentialsFile: file}, "c1", false},
		{"file, same tenant", Options{CredentialsFile: file, TenantID: "T1"}, "c1", false},
		{"file, other tenant", Options{CredentialsFile: file, TenantID: "t2"}, "differs", true},
		{"flags", Options{CredentialsFile: file, TenantID: "t2", ClientID: "c2", ClientSecret: "s2"}, "c2", false},
		{"flags without secret", Options{TenantID: "t2", ClientID: "c2"}, SecretEnv, true},
		{"flags without tenant", Options{ClientID: "c2", ClientSecret: "s"}, "--tenant", true},
		{"no file", Options{CredentialsFile: filepath.Join(dir, "absent.json")}, "not found", true},
	} {
		c, err := resolveCredentials(tc.o)
		switch {
		case tc.err && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrNoCredentials)):
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		case !tc.err && (err != nil || c.ClientID != tc.want):
			t.Errorf("%s: %v, %v", tc.name, c, err)
		}
		if err != nil && strings.Contains(err.Error(), "zz-secret-zz") {
			t.Errorf("%s: secret in error %v", tc.name, err)
		}
	}
	if s := creds.String(); strings.Contains(s, "zz-secret-zz") {
		t.Errorf("String() shows the secret: %s", s)
	}
}

func TestNewServerDefault(t *testing.T) {
	dir := t.TempDir()
	if err := WriteCredentials(filepath.Join(dir, CredentialsFile), Credentials{TenantID: "t", ClientID: "c", ClientSecret: "s",
		Authority: "https://localhost:9443/t"}); err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{DataDir: dir, HTTPClient: http.DefaultClient})
	if err != nil || c.BaseURL != "https://localhost:9443" {
		t.Fatalf("New = %v, %v", c, err)
	}
	if _, err := New(Options{DataDir: dir, Server: "http://plain:80", HTTPClient: http.DefaultClient}); err == nil {
		t.Error("plain-HTTP server accepted")
	}
	t.Setenv("SSL_CERT_FILE", "")
	if _, err := LoadCA("", dir); err == nil || !strings.Contains(err.Error(), "ca.pem") {
		t.Errorf("LoadCA without any CA: %v", err)
	}
}

func TestSubscriptionOf(t *testing.T) {
	for in, want := range map[string]string{
		"/subscriptions/s1/resourceGroups/rg": "/subscriptions/s1",
		"subscriptions/s1":                    "/subscriptions/s1",
		"/providers/x":                        "",
	} {
		if got := subscriptionOf(in); got != want {
			t.Errorf("subscriptionOf(%q) = %q", in, got)
		}
	}
}
