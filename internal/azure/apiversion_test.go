package azure

import (
	"net/url"
	"testing"
)

var apiVersionSeeds = []string{
	"api-version=7.5", "a=1&api-version=7.4&api-version=7.5", "api-version", "api-version&api-version=7.5",
	"", "x=1", "api-version=7.5%2D", "api-version=a+b", "a=1;b=2&api-version=7.5", "api-version=7.5;x",
	"%61pi-version=7.5", "&&api-version==7.5", "API-VERSION=7.5",
}

// FuzzAPIVersion checks apiVersion against url.ParseQuery, which it
// replaces on the hot path.
func FuzzAPIVersion(f *testing.F) {
	for _, s := range apiVersionSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw)
		if got, want := apiVersion(raw), q.Get("api-version"); got != want {
			t.Errorf("apiVersion(%q) = %q, url.ParseQuery gives %q", raw, got, want)
		}
	})
}
