package compute

import (
	"strings"
	"testing"
)

func TestParseKeyURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		want string
	}{
		{"https://kv1.vault.localhost:8443/keys/cmk/0123abcd", true, "https://kv1.vault.localhost:8443/keys/cmk/0123abcd"},
		{"https://KV1.vault.azure.net/keys/cmk/v1/", true, "https://kv1.vault.azure.net/keys/cmk/v1"},
		{"https://kv1.vault.azure.net/keys/cmk", false, ""}, // versionless: Azure requires a version
		{"http://kv1.vault.azure.net/keys/cmk/v1", false, ""},
		{"https://kv1.vault.azure.net/secrets/cmk/v1", false, ""},
		{"https://kv1.vault.azure.net/keys/cmk/v1?x=1", false, ""},
		{"not a url", false, ""},
	} {
		ref, ok := parseKeyURL(tc.in)
		if ok != tc.ok || (ok && ref.String() != tc.want) {
			t.Errorf("parseKeyURL(%q) = %v %v, want %v %v", tc.in, ref, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseKeyURL(f *testing.F) {
	f.Add("https://kv1.vault.localhost:8443/keys/cmk/0123abcd")
	f.Add("https://kv1.vault.azure.net/keys//")
	f.Add("https://u@h/keys/a/b")
	f.Fuzz(func(t *testing.T, s string) {
		ref, ok := parseKeyURL(s)
		if !ok {
			return
		}
		again, ok2 := parseKeyURL(ref.String())
		if !ok2 || again != ref || strings.Contains(ref.name, "/") {
			t.Errorf("%q parsed to %v, which does not round-trip (%v %v)", s, ref, again, ok2)
		}
	})
}

func TestConfidentialSizes(t *testing.T) {
	for size, want := range map[string][2]bool{ // confidential, TDX
		"Standard_DC2as_v5": {true, false}, "Standard_EC4ads_v5": {true, false}, "Standard_DC4es_v5": {true, true},
		"Standard_EC8eds_v5": {true, true}, "Standard_DC2as_v6": {true, false}, "Standard_D2s_v5": {false, false},
		"Standard_DC2s_v3": {false, false},
	} {
		if got := [2]bool{isConfidentialSize(size), isTDXSize(size)}; got != want {
			t.Errorf("%s: confidential, TDX = %v, want %v", size, got, want)
		}
	}
}
