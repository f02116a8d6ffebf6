package authz

import "strings"

// pattern is one compiled entry of actions/notActions/dataActions/
// notDataActions: lower-cased and split at '*'. Azure treats '*' as "any
// sequence of characters" (it may span '/'), so "*/read" matches every
// read action and "Microsoft.KeyVault/vaults/*" every vault data action;
// comparison is case-insensitive.
type pattern []string

func compile(p string) pattern { return strings.Split(strings.ToLower(p), "*") }

// match reports whether the lower-cased action a matches p.
func (p pattern) match(a string) bool {
	if len(p) == 1 {
		return a == p[0]
	}
	if !strings.HasPrefix(a, p[0]) {
		return false
	}
	a = a[len(p[0]):]
	last := p[len(p)-1]
	for _, mid := range p[1 : len(p)-1] {
		i := strings.Index(a, mid)
		if i < 0 {
			return false
		}
		a = a[i+len(mid):]
	}
	return len(a) >= len(last) && strings.HasSuffix(a, last)
}

type patterns []pattern

// compileAll compiles ps. A "/*/" also matches a single "/": Azure's
// Managed Identity Operator grants "userAssignedIdentities/*/assign/action"
// and so may perform "userAssignedIdentities/assign/action", and Key Vault
// Reader's "Microsoft.KeyVault/vaults/*/read" covers "vaults/read".
func compileAll(ps []string) patterns {
	out := make(patterns, 0, len(ps))
	for _, p := range ps {
		for _, v := range collapses(p) {
			out = append(out, compile(v))
		}
	}
	return out
}

// collapses returns p and every variant with some "/*/" replaced by "/".
func collapses(p string) []string {
	i := strings.Index(p, "/*/")
	if i < 0 {
		return []string{p}
	}
	var out []string
	for _, rest := range collapses(p[i+3:]) {
		out = append(out, p[:i]+"/*/"+rest, p[:i]+"/"+rest)
	}
	return out
}

func (ps patterns) match(a string) bool {
	for _, p := range ps {
		if p.match(a) {
			return true
		}
	}
	return false
}

// dataPrefixes are the action namespaces that are data actions. Azure
// keeps actions and dataActions apart: a role with actions ["*"] (Owner)
// grants no data action. The same string can name both (ARM's
// management-plane "Microsoft.KeyVault/vaults/keys/read" and the key
// vault data-plane one); cvault serves keys and secrets only on the data
// plane, so these names are data actions here.
// Source: MicrosoftDocs/azure-docs articles/role-based-access-control/permissions/security.md
// (Microsoft.KeyVault DataActions) and key-vault/managed-hsm/built-in-roles.md.
var dataPrefixes = []string{
	"microsoft.keyvault/vaults/keys/",
	"microsoft.keyvault/vaults/keyrotationpolicies/",
	"microsoft.keyvault/vaults/secrets/",
	"microsoft.keyvault/vaults/certificates/",
	"microsoft.keyvault/vaults/certificatecas/",
	"microsoft.keyvault/vaults/certificatecontacts/",
	"microsoft.keyvault/vaults/deletedkeys/",
	"microsoft.keyvault/vaults/deletedsecrets/",
	"microsoft.keyvault/vaults/deletedcertificates/",
	"microsoft.keyvault/vaults/storageaccounts/",
	"microsoft.keyvault/managedhsm/",
}

// IsDataAction reports whether action is a data action (checked against
// roles' dataActions/notDataActions) rather than a control-plane action.
func IsDataAction(action string) bool { return isDataLower(strings.ToLower(action)) }

func isDataLower(a string) bool {
	for _, p := range dataPrefixes {
		if strings.HasPrefix(a, p) {
			return true
		}
	}
	return false
}
