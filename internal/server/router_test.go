package server

import (
	"net/http"
	"regexp"
	"slices"
	"testing"

	"github.com/cvault/cvault/internal/route"
)

func TestRouterMatching(t *testing.T) {
	rt := newRouter()
	nop := func(http.ResponseWriter, *http.Request) error { return nil }
	for _, p := range []string{
		"GET /keys/{name}/{version}",
		"GET /keys/{name}/versions",
		"POST /keys/{name}/{version}/release",
		"POST /keys/{name}/release",
		"GET /subscriptions/{sub}/resourcegroups/{rg}",
		"PUT /subscriptions/{sub}/resourcegroups/{rg}",
		"GET /keys",
	} {
		m, pat, _ := cutSpace(p)
		if err := rt.add(route.Route{Method: m, Pattern: pat, Handler: nop}); err != nil {
			t.Fatal(err)
		}
	}
	if err := rt.add(route.Route{Method: "GET", Pattern: "/keys", Handler: nop}); err == nil {
		t.Error("duplicate route accepted")
	}
	for _, tc := range []struct {
		method, path, want string
		vals               []string
	}{
		{"GET", "/keys/k1/abc", "/keys/{name}/{version}", []string{"k1", "abc"}},
		{"GET", "/keys/k1/", "/keys/{name}/{version}", []string{"k1", ""}}, // azkeys' versionless GET
		{"GET", "/keys/k1/versions", "/keys/{name}/versions", []string{"k1"}},
		{"GET", "/keys/k1/VERSIONS", "/keys/{name}/versions", []string{"k1"}},
		{"POST", "/keys/k1/release", "/keys/{name}/release", []string{"k1"}},
		{"POST", "/keys/k1/v1/release", "/keys/{name}/{version}/release", []string{"k1", "v1"}},
		{"GET", "/Subscriptions/S1/resourceGroups/My-RG", "/subscriptions/{sub}/resourcegroups/{rg}", []string{"S1", "My-RG"}},
		{"GET", "/keys/", "/keys", nil},
		{"GET", "/keys", "/keys", nil},
		{"GET", "/nothing", "", nil},
		{"GET", "/keys/a/b/c/d", "", nil},
	} {
		n, vals := rt.match(tc.path)
		if tc.want == "" {
			if n != nil {
				t.Errorf("%s matched, want no match", tc.path)
			}
			continue
		}
		if n == nil || n.methods[tc.method] == nil {
			t.Errorf("%s %s: no match", tc.method, tc.path)
			continue
		}
		if got := n.methods[tc.method].route.Pattern; got != tc.want || !slices.Equal(vals, tc.vals) {
			t.Errorf("%s %s = %s %q, want %s %q", tc.method, tc.path, got, vals, tc.want, tc.vals)
		}
	}
}

func cutSpace(s string) (string, string, bool) {
	for i := range s {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func TestVaultHost(t *testing.T) {
	s := &Server{cfg: Config{VaultDomain: "vault.localhost"}}
	for host, want := range map[string]string{
		"kv1.vault.localhost:8443": "kv1",
		"KV1.Vault.Localhost":      "kv1",
		"kv1.vault.localhost.":     "kv1",
		"localhost:8443":           "",
		"a.b.vault.localhost":      "",
		"x.vault.localhost":        "", // too short for a vault name
		"vault.localhost":          "",
		"kv1.vault.example.com":    "",
	} {
		got, ok := s.vaultHost(host)
		if got != want || ok != (want != "") {
			t.Errorf("vaultHost(%q) = %q, %v; want %q", host, got, ok, want)
		}
	}
}

func TestNewRequestID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a, b := newRequestID(), newRequestID()
	if !re.MatchString(a) || a == b {
		t.Errorf("newRequestID() = %q, %q; want distinct version-4 UUIDs", a, b)
	}
}
