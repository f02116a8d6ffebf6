// Package policy holds the Azure Key Vault Secure Key Release policy grammar:
// Parse turns a key's release_policy data into a Policy (rejecting malformed
// policies with the path of the offending node, as Key Vault answers 400 at
// key create/update time), Canonical re-serializes it deterministically, and
// Evaluate decides whether an already verified attestation token's issuer and
// claims satisfy it. It serves the key release flow (seeds 000/001: secure key
// release on confidential VMs) and the default confidential-VM policy that
// disk encryption keys carry (seeds 003/004).
//
// The package imports nothing of cvault, so both the key vault (validation at
// create/update) and the release operation (evaluation) use it.
//
// Grammar (wire/keyvault-release-attestation.md §3.1):
//
//	policy    := { "version": "1.0.0" | "0.2" (optional), "anyOf": [ authority, … ] }
//	authority := { "authority": URL, ("allOf" | "anyOf"): [ condition, … ] }
//	condition := { "claim": "dotted.path", <operator>: value }
//	           | { "claim": …, "condition": <operator>, "value": value }   (legacy preview form)
//	           | { "allOf": [ condition, … ] } | { "anyOf": [ condition, … ] }
//	operator  := equals | notEquals | less | lessOrEquals | greater | greaterOrEquals | exists
//	value     := JSON string | number | boolean
//
// Key names are matched case-insensitively, because Microsoft's own grammar
// page spells them "anyof"/"allof" while every real policy uses "anyOf"/"allOf";
// Canonical writes the camelCase spelling.
package policy

import (
	"errors"
	"strings"
)

// Limits on what Parse accepts. They bound the work a stored policy can cost
// every release; Azure's own policies are far smaller (its default CVM policy
// with one entry per region is about 24 KiB pretty-printed).
const (
	// MaxSize is the largest policy document, in bytes.
	MaxSize = 128 << 10
	// MaxDepth is how deeply allOf/anyOf groups may nest; an authority's own
	// group is depth 1.
	MaxDepth = 32
)

// Versions Parse accepts. A policy without a version is read as Version1.
const (
	Version1       = "1.0.0" // docs, importkey tool, CVM samples, Azure's default CVM policy
	VersionPreview = "0.2"   // confidential-containers encfs and kata samples
)

// Sentinel errors of Evaluate. Both come wrapped with an explanation.
var (
	// ErrNoAuthority: the token's issuer is not an authority the policy names.
	ErrNoAuthority = errors.New("release policy names no such authority")
	// ErrNotSatisfied: an authority matched the issuer but its conditions do
	// not hold on the claims.
	ErrNotSatisfied = errors.New("release policy not satisfied")
)

// ParseError reports a malformed policy. Path points at the offending node in
// the document, e.g. "anyOf[0].allOf[2].equals" ("" for the document itself).
// Parse may return several joined with errors.Join; errors.As finds the first.
type ParseError struct {
	Path   string
	Reason string
}

func (e *ParseError) Error() string {
	if e.Path == "" {
		return "release policy: " + e.Reason
	}
	return "release policy: " + e.Path + ": " + e.Reason
}

// Policy is a parsed release policy. It is immutable and safe for concurrent
// use; build one with Parse.
type Policy struct {
	version     string
	authorities []authority
}

// authority is one member of the policy's top-level anyOf.
type authority struct {
	url  string // as written in the policy
	key  authorityKey
	rule node // an allOf or anyOf group
}

type kind uint8

const (
	kindAllOf kind = iota
	kindAnyOf
	kindClaim
)

func (k kind) String() string {
	switch k {
	case kindAllOf:
		return "allOf"
	case kindAnyOf:
		return "anyOf"
	}
	return "claim"
}

// node is a condition: a group (allOf/anyOf with members) or a claim test.
type node struct {
	kind    kind
	members []node // groups only

	claim string   // claim tests only: the dotted path as written
	segs  []string // claim split at dots
	op    operator
	val   value
}

// Version returns the policy's version ("1.0.0" when the document had none).
func (p *Policy) Version() string { return p.version }

// Authorities returns the authority URLs the policy names, as written, in
// document order.
func (p *Policy) Authorities() []string {
	out := make([]string, len(p.authorities))
	for i, a := range p.authorities {
		out[i] = a.url
	}
	return out
}

// authorityKey is an issuer URL split for comparison: scheme and host compare
// case-insensitively (they are case-insensitive in URLs), the path exactly,
// and trailing slashes are dropped because Microsoft's policies and MAA
// issuers mix both forms (wire §2.6). Ports and percent-encoding are compared
// as written (UNVERIFIED on Azure; no real client varies them).
type authorityKey struct {
	scheme, host, path string
}

func splitAuthority(s string) authorityKey {
	s = strings.TrimRight(s, "/")
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return authorityKey{path: s}
	}
	host, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		host, path = rest[:i], rest[i:]
	}
	return authorityKey{scheme: scheme, host: host, path: path}
}

func (k authorityKey) matches(o authorityKey) bool {
	return strings.EqualFold(k.scheme, o.scheme) && strings.EqualFold(k.host, o.host) && k.path == o.path
}
