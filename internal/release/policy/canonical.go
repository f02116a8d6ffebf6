package policy

import (
	"bytes"
	"encoding/json"
)

// Canonical re-serializes the policy deterministically: compact JSON with
// "version" first, then "anyOf"; "authority" before its group; "claim" before
// its operator. The version is kept as given ("1.0.0" when the document had
// none), string values stay strings and numbers keep their literal, so
// Parse(Canonical()) evaluates exactly like p and Canonical is idempotent.
// Key case is normalized to camelCase and the legacy {"condition","value"}
// form is written as {"<operator>": value}.
//
// Azure also hands back re-serialized policies (keys reordered), so callers
// must not expect the bytes they stored (wire §3.1).
func (p *Policy) Canonical() []byte {
	var b bytes.Buffer
	b.WriteString(`{"version":`)
	writeString(&b, p.version)
	b.WriteString(`,"anyOf":[`)
	for i, a := range p.authorities {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"authority":`)
		writeString(&b, a.url)
		b.WriteByte(',')
		writeGroup(&b, a.rule)
		b.WriteByte('}')
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// writeGroup writes `"allOf":[…]` or `"anyOf":[…]`.
func writeGroup(b *bytes.Buffer, n node) {
	b.WriteByte('"')
	b.WriteString(n.kind.String())
	b.WriteString(`":[`)
	for i, m := range n.members {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('{')
		if m.kind == kindClaim {
			b.WriteString(`"claim":`)
			writeString(b, m.claim)
			b.WriteString(`,"`)
			b.WriteString(m.op.String())
			b.WriteString(`":`)
			writeValue(b, m.val)
		} else {
			writeGroup(b, m)
		}
		b.WriteByte('}')
	}
	b.WriteByte(']')
}

func writeValue(b *bytes.Buffer, v value) {
	if v.kind == valueString {
		writeString(b, v.lit)
		return
	}
	b.WriteString(v.lit) // a JSON number literal as decoded, or true/false
}

func writeString(b *bytes.Buffer, s string) {
	q, _ := json.Marshal(s) // a string always marshals
	b.Write(q)
}
