package policy

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Result says which authority satisfied the policy.
type Result struct {
	// Index is the authority's position in the policy's anyOf.
	Index int
	// Authority is its URL as written in the policy.
	Authority string
}

// Evaluate decides whether a token from issuer carrying claims satisfies the
// policy. The caller has already verified the token (signature, issuer keys,
// lifetime); Evaluate only applies the policy: some authority must name the
// issuer (see authorityKey for how URLs compare) and that authority's
// condition tree must hold on the claims.
//
// Claims are decoded JSON: nested map[string]any for objects, and numbers as
// json.Number (decode with UseNumber to keep large integers exact) or
// float64; Go integer types are accepted too. A dotted claim path walks
// nested objects ("x-ms-isolation-tee.x-ms-compliance-status"); arrays are
// not indexed. A missing claim fails every operator except exists.
// Equality compares canonical text (see canonicalText); the ordering
// operators compare numerically and fail unless both sides are numbers or
// numeric strings. A claim that is an object, array or null fails every
// operator but exists.
//
// The error wraps ErrNoAuthority or ErrNotSatisfied with an explanation: the
// issuer and the policy's authorities, or for each authority tried the
// member that failed with the claim's value and what was wanted.
func (p *Policy) Evaluate(issuer string, claims map[string]any) (Result, error) {
	iss := splitAuthority(issuer)
	var why []string
	for i, a := range p.authorities {
		if !a.key.matches(iss) {
			continue
		}
		if a.rule.holds(claims) {
			return Result{Index: i, Authority: a.url}, nil
		}
		why = append(why, fmt.Sprintf("anyOf[%d] (%s): %s", i, a.url, a.rule.explain(claims)))
	}
	if why == nil {
		return Result{}, fmt.Errorf("%w: issuer %q is not among the policy's authorities %s",
			ErrNoAuthority, issuer, p.authorityList())
	}
	return Result{}, fmt.Errorf("%w: %s", ErrNotSatisfied, strings.Join(why, "; "))
}

// authorityList names the authorities for an error, abridged: Azure's default
// CVM policy lists one per region.
func (p *Policy) authorityList() string {
	const show = 8
	urls := p.Authorities()
	if len(urls) > show {
		return "[" + strings.Join(urls[:show], " ") + fmt.Sprintf(" … and %d more]", len(urls)-show)
	}
	return "[" + strings.Join(urls, " ") + "]"
}

// holds evaluates the condition without building explanations, so a
// satisfied policy costs no allocations.
func (n *node) holds(claims map[string]any) bool {
	switch n.kind {
	case kindAllOf:
		for i := range n.members {
			if !n.members[i].holds(claims) {
				return false
			}
		}
		return true
	case kindAnyOf:
		for i := range n.members {
			if n.members[i].holds(claims) {
				return true
			}
		}
		return false
	}
	o, _, _ := n.test(claims)
	return o == held
}

// explain says why a condition that does not hold fails: for allOf the first
// failing member, for anyOf every member (single members unwrapped).
func (n *node) explain(claims map[string]any) string {
	switch n.kind {
	case kindAllOf:
		for i := range n.members {
			if !n.members[i].holds(claims) {
				return fmt.Sprintf("allOf[%d]: %s", i, n.members[i].explain(claims))
			}
		}
		return "allOf: holds"
	case kindAnyOf:
		if len(n.members) == 1 {
			return "anyOf[0]: " + n.members[0].explain(claims)
		}
		parts := make([]string, len(n.members))
		for i := range n.members {
			parts[i] = fmt.Sprintf("anyOf[%d]: %s", i, n.members[i].explain(claims))
		}
		return "no anyOf member held (" + strings.Join(parts, "; ") + ")"
	}
	return n.explainTest(claims)
}

// outcome is how a claim test came out; explain turns a failure into text,
// so holds costs no allocations.
type outcome uint8

const (
	held       outcome = iota
	missing            // the claim is absent
	present            // exists:false, but the claim is there
	noText             // object, array, null or a non-finite number
	mismatch           // compared and failed
	notNumeric         // an ordering operator on a non-number
)

// test applies a claim condition, returning the claim's value and canonical
// text for explain.
func (n *node) test(claims map[string]any) (outcome, any, string) {
	v, found := lookup(claims, n.segs)
	if n.op == opExists {
		switch wantPresent := n.val.text == "true"; {
		case found == wantPresent:
			return held, v, ""
		case found:
			return present, v, ""
		}
		return missing, nil, ""
	}
	if !found {
		return missing, nil, ""
	}
	text, num, ok := canonicalText(v)
	if !ok {
		return noText, v, ""
	}
	var holds bool
	switch n.op {
	case opEquals:
		holds = text == n.val.text
	case opNotEquals:
		holds = text != n.val.text
	default:
		c, comparable := 0, num != ""
		if comparable {
			c, comparable = compareNumbers(num, n.val.num)
		}
		if !comparable {
			return notNumeric, v, text
		}
		switch n.op {
		case opLess:
			holds = c < 0
		case opLessOrEquals:
			holds = c <= 0
		case opGreater:
			holds = c > 0
		case opGreaterOrEquals:
			holds = c >= 0
		}
	}
	if holds {
		return held, v, text
	}
	return mismatch, v, text
}

// explainTest says why a claim test failed.
func (n *node) explainTest(claims map[string]any) string {
	o, v, text := n.test(claims)
	want := n.op.String() + " " + strconv.Quote(n.val.text)
	switch o {
	case missing:
		return fmt.Sprintf("claim %s is missing, want %s", n.claim, want)
	case present:
		return fmt.Sprintf("claim %s is present, want %s", n.claim, want)
	case noText:
		return fmt.Sprintf("claim %s is %s, want %s", n.claim, claimType(v), want)
	case notNumeric:
		return fmt.Sprintf("claim %s = %s, want %s (not comparable as numbers)", n.claim, quoteClaim(text), want)
	case mismatch:
		return fmt.Sprintf("claim %s = %s, want %s", n.claim, quoteClaim(text), want)
	}
	return "claim " + n.claim + " holds"
}

// lookup walks a dotted claim path through nested JSON objects.
func lookup(claims map[string]any, segs []string) (any, bool) {
	var cur any = claims
	for _, s := range segs {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[s]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// quoteClaim quotes a claim's text for an explanation, shortened: claims come
// from the caller's own token, but some (keys, reports) are long.
func quoteClaim(s string) string {
	const limit = 96
	if len(s) <= limit {
		return strconv.Quote(s)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…"
}

func claimType(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case nil:
		return "null"
	}
	return fmt.Sprintf("a %T", v)
}
