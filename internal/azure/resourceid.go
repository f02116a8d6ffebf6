package azure

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// ResourceID is a parsed ARM resource ID:
// /subscriptions/{sub}[/resourceGroups/{rg}[/providers/{ns}/{type}/{name}[/{type}/{name}…]]]
// Comparisons are case-insensitive, as ARM's are.
type ResourceID struct {
	Subscription  string
	ResourceGroup string
	Namespace     string   // e.g. Microsoft.KeyVault
	Types         []string // e.g. ["vaults", "keys"]
	Names         []string // same length as Types
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// IsGUID reports whether s is a GUID in 8-4-4-4-12 form.
func IsGUID(s string) bool { return guidRE.MatchString(s) }

// ParseResourceID parses an ARM resource ID (leading '/' required,
// trailing '/' tolerated).
func ParseResourceID(s string) (ResourceID, error) {
	bad := func(why string) (ResourceID, error) {
		return ResourceID{}, Errorf(http.StatusBadRequest, CodeInvalidResourceID,
			"The resource id '%s' is invalid: %s.", s, why)
	}
	if !strings.HasPrefix(s, "/") {
		return bad("it must start with '/subscriptions/'")
	}
	parts := strings.Split(strings.Trim(s, "/"), "/")
	for _, p := range parts {
		if p == "" {
			return bad("it has an empty segment")
		}
	}
	var id ResourceID
	if len(parts) < 2 || !strings.EqualFold(parts[0], "subscriptions") {
		return bad("it must start with '/subscriptions/{subscriptionId}'")
	}
	id.Subscription = parts[1]
	rest := parts[2:]
	if len(rest) == 0 {
		return id, nil
	}
	if strings.EqualFold(rest[0], "resourceGroups") {
		if len(rest) < 2 {
			return bad("the resource group name is missing")
		}
		id.ResourceGroup = rest[1]
		rest = rest[2:]
	}
	if len(rest) == 0 {
		return id, nil
	}
	if !strings.EqualFold(rest[0], "providers") || len(rest) < 4 {
		return bad("expected '/providers/{namespace}/{type}/{name}'")
	}
	id.Namespace = rest[1]
	rest = rest[2:]
	if len(rest)%2 != 0 {
		return bad("resource types and names must come in pairs")
	}
	for i := 0; i < len(rest); i += 2 {
		id.Types = append(id.Types, rest[i])
		id.Names = append(id.Names, rest[i+1])
	}
	return id, nil
}

// Name returns the last resource name ("" for a subscription or group).
func (id ResourceID) Name() string {
	if len(id.Names) == 0 {
		return ""
	}
	return id.Names[len(id.Names)-1]
}

// Type returns "Namespace/type1/type2" ("" for a subscription or group).
func (id ResourceID) Type() string {
	if id.Namespace == "" {
		return ""
	}
	return id.Namespace + "/" + strings.Join(id.Types, "/")
}

// String renders the ID in ARM's canonical casing of the fixed segments,
// keeping the caller's casing of names.
func (id ResourceID) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "/subscriptions/%s", id.Subscription)
	if id.ResourceGroup != "" {
		fmt.Fprintf(&b, "/resourceGroups/%s", id.ResourceGroup)
	}
	if id.Namespace != "" {
		fmt.Fprintf(&b, "/providers/%s", id.Namespace)
		for i := range id.Types {
			fmt.Fprintf(&b, "/%s/%s", id.Types[i], id.Names[i])
		}
	}
	return b.String()
}

// Key is the case-folded String, for store keys and map lookups.
func (id ResourceID) Key() string { return strings.ToLower(id.String()) }

// Equal compares two IDs case-insensitively.
func (id ResourceID) Equal(o ResourceID) bool { return id.Key() == o.Key() }

// Scope folds an ARM scope string ("/", "/subscriptions/x/…") for comparison:
// lower case, no trailing '/'.
func Scope(s string) string {
	s = strings.ToLower(strings.TrimRight(s, "/"))
	if s == "" {
		return "/"
	}
	return s
}

// InScope reports whether the resource or scope s lies at or below scope.
// Both are compared case-insensitively on whole path segments.
func InScope(s, scope string) bool {
	s, scope = Scope(s), Scope(scope)
	if scope == "/" {
		return true
	}
	return s == scope || strings.HasPrefix(s, scope+"/")
}
