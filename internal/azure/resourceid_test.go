package azure

import (
	"strings"
	"testing"
)

func TestParseResourceID(t *testing.T) {
	id, err := ParseResourceID("/subscriptions/S/resourcegroups/RG/providers/Microsoft.KeyVault/vaults/kv1/keys/k1/")
	if err != nil {
		t.Fatal(err)
	}
	if id.Subscription != "S" || id.ResourceGroup != "RG" || id.Namespace != "Microsoft.KeyVault" ||
		id.Type() != "Microsoft.KeyVault/vaults/keys" || id.Name() != "k1" {
		t.Errorf("parsed %+v", id)
	}
	if got := id.String(); got != "/subscriptions/S/resourceGroups/RG/providers/Microsoft.KeyVault/vaults/kv1/keys/k1" {
		t.Errorf("String = %s", got)
	}
	for _, bad := range []string{"", "subscriptions/x", "/subscriptions", "/subscriptions//resourceGroups/x",
		"/subscriptions/s/resourceGroups", "/subscriptions/s/providers/ns", "/subscriptions/s/resourceGroups/r/providers/ns/t"} {
		if _, err := ParseResourceID(bad); err == nil {
			t.Errorf("ParseResourceID(%q) accepted", bad)
		}
	}
}

func TestInScope(t *testing.T) {
	key := "/subscriptions/S/resourceGroups/RG/providers/Microsoft.KeyVault/vaults/kv1/keys/k1"
	for scope, want := range map[string]bool{
		"/":                                  true,
		"/subscriptions/s":                   true,
		"/subscriptions/S/resourcegroups/rg": true,
		"/subscriptions/S/resourceGroups/RG/providers/Microsoft.KeyVault/vaults/kv1":  true,
		"/subscriptions/S/resourceGroups/RG/providers/Microsoft.KeyVault/vaults/kv1/": true,
		key: true,
		"/subscriptions/S/resourceGroups/RG/providers/Microsoft.KeyVault/vaults/kv": false, // prefix of a name, not a segment
		"/subscriptions/S/resourceGroups/RG2":                                       false,
		key + "/more":                                                               false,
	} {
		if got := InScope(key, scope); got != want {
			t.Errorf("InScope(key, %q) = %v, want %v", scope, got, want)
		}
	}
}

func FuzzParseResourceID(f *testing.F) {
	for _, s := range []string{"/subscriptions/s", "/subscriptions/s/resourceGroups/r/providers/a.b/t/n/u/v", "/", "//", "/subscriptions/s/providers/x/y/z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseResourceID(s)
		if err != nil {
			return
		}
		// A parsed ID renders to an equivalent ID.
		again, err := ParseResourceID(id.String())
		if err != nil || !again.Equal(id) {
			t.Fatalf("%q → %q does not round-trip: %v", s, id.String(), err)
		}
		if len(id.Types) != len(id.Names) || strings.Contains(id.Key(), "//") {
			t.Fatalf("inconsistent %+v", id)
		}
	})
}

func TestAPIVersions(t *testing.T) {
	kv := Versions("7.4", "7.5").AndDatesFrom("2025-07-01")
	for v, want := range map[string]bool{"7.4": true, "7.3": false, "2025-07-01": true, "2026-01-01-preview": true, "2025-06-30": false, "2025-7-1": false} {
		if kv.Accepts(v) != want {
			t.Errorf("Accepts(%q) = %v", v, !want)
		}
	}
}

func FuzzUnmarshalJSON(f *testing.F) {
	for _, s := range []string{`{"location":"eastus"}`, `{"location":5}`, `[]`, `{`, ``, `{"a":1} x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var v struct {
			Location *string           `json:"location"`
			Tags     map[string]string `json:"tags"`
		}
		err := UnmarshalJSON(b, CodeBadRequest, true, &v)
		if err != nil {
			e, ok := err.(*Error)
			if !ok || e.Status != 400 {
				t.Fatalf("error %v is not a 400 *Error", err)
			}
		}
	})
}
