package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// maxErrors caps how many problems one Parse reports.
const maxErrors = 20

// maxJSONDepth bounds raw JSON nesting before the grammar is checked: enough
// for MaxDepth groups (each an object plus an array) under the policy,
// authority and anyOf levels.
const maxJSONDepth = 2*MaxDepth + 8

// Parse reads a release policy document, reporting every problem found (up to
// a limit) as *ParseError values joined with errors.Join. On error the Policy
// is nil.
//
// Unknown keys are rejected, as Azure rejects malformed policies; only key
// case is lenient (see the package comment). Duplicate keys are rejected too,
// because parsers disagree on which one wins.
func Parse(data []byte) (*Policy, error) {
	if len(data) > MaxSize {
		return nil, &ParseError{Reason: fmt.Sprintf("policy is %d bytes, more than the %d allowed", len(data), MaxSize)}
	}
	raw, err := decodeJSON(data)
	if err != nil {
		return nil, err
	}
	var p parser
	pol := p.policy(raw)
	if len(p.errs) > 0 {
		if len(p.errs) == 1 {
			return nil, p.errs[0]
		}
		return nil, errors.Join(p.errs...)
	}
	return pol, nil
}

// object is a decoded JSON object with its members in document order, so
// duplicate keys stay visible (encoding/json would silently keep the last).
type object []member

type member struct {
	key string
	val any // object, []any, string, json.Number, bool or nil
}

func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := readJSON(dec, "", 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &ParseError{Reason: "invalid JSON: data after the policy object"}
	}
	return v, nil
}

func readJSON(dec *json.Decoder, path string, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonError(path, err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	if depth >= maxJSONDepth {
		return nil, &ParseError{Path: path, Reason: "JSON nested too deeply"}
	}
	switch d {
	case '{':
		var obj object
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, jsonError(path, err)
			}
			key, _ := kt.(string) // the decoder only yields string keys
			v, err := readJSON(dec, joinKey(path, key), depth+1)
			if err != nil {
				return nil, err
			}
			obj = append(obj, member{key, v})
		}
		if _, err := dec.Token(); err != nil {
			return nil, jsonError(path, err)
		}
		if obj == nil {
			obj = object{}
		}
		return obj, nil
	case '[':
		arr := []any{}
		for dec.More() {
			v, err := readJSON(dec, joinIndex(path, len(arr)), depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := dec.Token(); err != nil {
			return nil, jsonError(path, err)
		}
		return arr, nil
	}
	return nil, &ParseError{Path: path, Reason: "invalid JSON"}
}

func jsonError(path string, err error) error {
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		if path == "" {
			return &ParseError{Reason: "invalid JSON: unexpected end of input"}
		}
		return &ParseError{Path: path, Reason: "invalid JSON: unexpected end of input"}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &ParseError{Path: path, Reason: fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se)}
	}
	return &ParseError{Path: path, Reason: "invalid JSON: " + err.Error()}
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func joinIndex(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// parser checks the decoded document against the grammar, collecting errors.
type parser struct {
	errs []error
}

func (p *parser) fail(path, format string, args ...any) {
	if len(p.errs) < maxErrors {
		p.errs = append(p.errs, &ParseError{Path: path, Reason: fmt.Sprintf(format, args...)})
	}
}

// field is an object member found under its canonical name.
type field struct {
	path string // path of the member, with the key as written
	val  any
}

// fields indexes obj by the canonical names it may hold (matched without
// regard to case), reporting unknown and duplicate keys.
func (p *parser) fields(obj object, path string, names ...string) map[string]field {
	out := make(map[string]field, len(obj))
	for _, m := range obj {
		name := ""
		for _, n := range names {
			if strings.EqualFold(n, m.key) {
				name = n
				break
			}
		}
		fp := joinKey(path, m.key)
		switch _, dup := out[name]; {
		case name == "":
			p.fail(fp, "unknown key %q (expected one of %s)", m.key, strings.Join(names, ", "))
		case dup:
			p.fail(fp, "duplicate key %q", m.key)
		default:
			out[name] = field{fp, m.val}
		}
	}
	return out
}

func (p *parser) policy(raw any) *Policy {
	obj, ok := raw.(object)
	if !ok {
		p.fail("", "policy must be a JSON object, not %s", jsonType(raw))
		return nil
	}
	f := p.fields(obj, "", "version", "anyOf", "allOf")
	pol := &Policy{version: Version1}
	if v, ok := f["version"]; ok {
		s, isString := v.val.(string)
		switch {
		case !isString:
			p.fail(v.path, "version must be a string, not %s", jsonType(v.val))
		case s != Version1 && s != VersionPreview:
			p.fail(v.path, "unsupported version %q (supported: %q, %q)", s, Version1, VersionPreview)
		default:
			pol.version = s
		}
	}
	if v, ok := f["allOf"]; ok {
		p.fail(v.path, "a policy's top level is anyOf over authorities; allOf is allowed only inside an authority")
	}
	v, ok := f["anyOf"]
	if !ok {
		p.fail("", "policy needs anyOf: a list of authorities")
		return pol
	}
	arr, ok := v.val.([]any)
	if !ok || len(arr) == 0 {
		p.fail(v.path, "anyOf must be a non-empty array of authorities")
		return pol
	}
	for i, a := range arr {
		if auth, ok := p.authority(a, joinIndex(v.path, i)); ok {
			pol.authorities = append(pol.authorities, auth)
		}
	}
	return pol
}

func (p *parser) authority(raw any, path string) (authority, bool) {
	obj, ok := raw.(object)
	if !ok {
		p.fail(path, "authority entry must be an object, not %s", jsonType(raw))
		return authority{}, false
	}
	f := p.fields(obj, path, "authority", "allOf", "anyOf")
	var a authority
	good := true
	if v, ok := f["authority"]; !ok {
		p.fail(path, "authority entry needs an authority URL")
		good = false
	} else if s, ok := v.val.(string); !ok {
		p.fail(v.path, "authority must be a string, not %s", jsonType(v.val))
		good = false
	} else if reason := checkAuthorityURL(s); reason != "" {
		p.fail(v.path, "%s", reason)
		good = false
	} else {
		a.url, a.key = s, splitAuthority(s)
	}
	allOf, hasAll := f["allOf"]
	anyOf, hasAny := f["anyOf"]
	switch {
	case hasAll && hasAny:
		p.fail(path, "authority entry needs exactly one of allOf or anyOf, not both")
		return a, false
	case hasAll:
		a.rule, ok = p.group(kindAllOf, allOf, 1)
	case hasAny:
		a.rule, ok = p.group(kindAnyOf, anyOf, 1)
	default:
		p.fail(path, "authority entry needs exactly one of allOf or anyOf")
		return a, false
	}
	return a, good && ok
}

// checkAuthorityURL requires an absolute http(s) URL naming a host: the
// issuer of attestation tokens, whose OpenID metadata release fetches.
func checkAuthorityURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Sprintf("authority %q is not a URL", s)
	case !strings.EqualFold(u.Scheme, "https") && !strings.EqualFold(u.Scheme, "http"):
		return fmt.Sprintf("authority %q must be an https URL", s)
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return fmt.Sprintf("authority %q must be a URL of the form https://host[/path]", s)
	}
	return ""
}

func (p *parser) group(k kind, f field, depth int) (node, bool) {
	if depth > MaxDepth {
		p.fail(f.path, "conditions nested more than %d deep", MaxDepth)
		return node{}, false
	}
	arr, ok := f.val.([]any)
	if !ok || len(arr) == 0 {
		p.fail(f.path, "%s must be a non-empty array of conditions", k)
		return node{}, false
	}
	n := node{kind: k, members: make([]node, 0, len(arr))}
	good := true
	for i, m := range arr {
		c, ok := p.condition(m, joinIndex(f.path, i), depth)
		good = good && ok
		n.members = append(n.members, c)
	}
	return n, good
}

var conditionKeys = []string{
	"claim", "allOf", "anyOf", "condition", "value",
	"equals", "notEquals", "less", "lessOrEquals", "greater", "greaterOrEquals", "exists",
}

func (p *parser) condition(raw any, path string, depth int) (node, bool) {
	obj, ok := raw.(object)
	if !ok {
		p.fail(path, "condition must be an object, not %s", jsonType(raw))
		return node{}, false
	}
	f := p.fields(obj, path, conditionKeys...)
	allOf, hasAll := f["allOf"]
	anyOf, hasAny := f["anyOf"]
	claim, hasClaim := f["claim"]
	switch {
	case hasAll || hasAny:
		if len(f) != 1 {
			p.fail(path, "a group condition holds only one allOf or anyOf")
			return node{}, false
		}
		if hasAll {
			return p.group(kindAllOf, allOf, depth+1)
		}
		return p.group(kindAnyOf, anyOf, depth+1)
	case !hasClaim:
		p.fail(path, "condition needs a claim, an allOf or an anyOf")
		return node{}, false
	}

	n := node{kind: kindClaim}
	good := true
	if s, ok := claim.val.(string); !ok {
		p.fail(claim.path, "claim must be a string, not %s", jsonType(claim.val))
		good = false
	} else if segs := strings.Split(s, "."); s == "" || containsEmpty(segs) {
		p.fail(claim.path, "claim %q is not a dotted claim path", s)
		good = false
	} else {
		n.claim, n.segs = s, segs
	}

	var opField field
	if c, legacy := f["condition"]; legacy {
		// Legacy preview form {"claim","condition":"equals","value"}: read as
		// {"claim", "equals": value}.
		name, _ := c.val.(string)
		op, ok := lookupOperator(name)
		if !ok {
			p.fail(c.path, "condition must name an operator (%s)", strings.Join(operatorNames[:], ", "))
			return n, false
		}
		v, ok := f["value"]
		if !ok {
			p.fail(path, "legacy condition needs a value")
			return n, false
		}
		if len(f) != 3 {
			p.fail(path, "legacy condition holds exactly claim, condition and value, no operator key")
			return n, false
		}
		n.op, opField = op, v
	} else {
		if v, ok := f["value"]; ok {
			p.fail(v.path, "value belongs to the legacy form with condition; use {\"claim\": …, \"equals\": …}")
			return n, false
		}
		found := 0
		for i, name := range operatorNames {
			if v, ok := f[name]; ok {
				found++
				if found > 1 {
					p.fail(v.path, "condition has more than one operator")
					return n, false
				}
				n.op, opField = operator(i), v
			}
		}
		if found == 0 {
			p.fail(path, "condition needs one operator (%s)", strings.Join(operatorNames[:], ", "))
			return n, false
		}
	}
	val, ok := p.value(n.op, opField)
	n.val = val
	return n, good && ok
}

func containsEmpty(segs []string) bool {
	for _, s := range segs {
		if s == "" {
			return true
		}
	}
	return false
}

func (p *parser) value(op operator, f field) (value, bool) {
	var v value
	switch x := f.val.(type) {
	case string:
		v = value{kind: valueString, lit: x}
	case json.Number:
		v = value{kind: valueNumber, lit: string(x)}
	case bool:
		v = value{kind: valueBool, lit: strconv.FormatBool(x)}
	default:
		p.fail(f.path, "value must be a string, number or boolean, not %s", jsonType(f.val))
		return v, false
	}
	v.text, v.num, _ = canonicalText(f.val)
	switch {
	case op == opExists && v.text != "true" && v.text != "false":
		p.fail(f.path, "exists takes true or false, not %s", quoteValue(v))
		return v, false
	case op.ordering() && v.num == "":
		p.fail(f.path, "%s compares numbers; %s is not a number", op, quoteValue(v))
		return v, false
	}
	return v, true
}

func quoteValue(v value) string {
	if v.kind == valueString {
		return strconv.Quote(v.lit)
	}
	return v.lit
}

func jsonType(v any) string {
	switch v.(type) {
	case object:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
