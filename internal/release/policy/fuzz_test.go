package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// fuzzSeeds are the real-world policies plus the grammar's corners.
func fuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, data := range testdataPolicies(f) {
		seeds = append(seeds, data)
	}
	for _, s := range []string{
		string(CVMDefault("https://maa.example")),
		nested(MaxDepth),
		nested(MaxDepth + 1),
		one(`{"claim":"a","equals":"x"},{"claim":"b","notEquals":false},{"claim":"c","less":10},{"claim":"d","lessOrEquals":"10"},{"claim":"e","greater":-1.5},{"claim":"f","greaterOrEquals":1e3},{"claim":"g","exists":true}`),
		`{"ANYOF":[{"allof":[{"Equals":"x","CLAIM":"a"}],"Authority":"https://maa.example/"}]}`,
		`{"anyOf":[{"authority":"https://a","anyOf":[{"claim":"a","condition":"equals","value":0}]}]}`,
		one(`{"claim":"n","equals":123456789012345678901234567890}`, `{"claim":"m","equals":-0.0}`, `{"claim":"k","equals":"\u00e9\n<&>"}`),
		one(`{"claim":"a","equals":"x","equals":"y"}`),
		one(`{"claim":"a","equals":{}}`),
		`{"version":"0.2","anyOf":[{"authority":"http://127.0.0.1:8443/x","allOf":[{"claim":"a.b.c","exists":"false"}]}]}`,
		`{"anyOf":[]}`, `{}`, `[]`, `null`, ``, `{"anyOf":[{}]}`,
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// FuzzParse: Parse never panics; an error comes with a nil policy and is a
// *ParseError; a success round-trips through Canonical to the same bytes.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if p != nil {
				t.Fatalf("error %v with a non-nil policy", err)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *ParseError", err, err)
			}
			return
		}
		c := p.Canonical()
		if !json.Valid(c) {
			t.Fatalf("Canonical is not valid JSON: %s", c)
		}
		q, err := Parse(c)
		if err != nil {
			t.Fatalf("Parse(Canonical) = %v\ninput: %q\ncanonical: %s", err, data, c)
		}
		if c2 := q.Canonical(); !bytes.Equal(c, c2) {
			t.Fatalf("Canonical not stable:\n%s\n%s", c, c2)
		}
		if len(p.Authorities()) == 0 {
			t.Fatalf("parsed policy has no authorities: %q", data)
		}
	})
}

// FuzzEvaluate: evaluating any parsed policy on any JSON claims never
// panics and fails only with the package's sentinels.
func FuzzEvaluate(f *testing.F) {
	claims := []string{snpClaims, aciClaims, guestClaims, `{"sdk-test":true}`, `{"a":1,"c":{},"e":3}`, `{}`}
	for i, s := range fuzzSeeds(f) {
		f.Add(s, []byte(claims[i%len(claims)]), "https://maa.example")
	}
	f.Fuzz(func(t *testing.T, policy, claimsJSON []byte, issuer string) {
		p, err := Parse(policy)
		if err != nil {
			return
		}
		for _, useNumber := range []bool{true, false} {
			dec := json.NewDecoder(bytes.NewReader(claimsJSON))
			if useNumber {
				dec.UseNumber()
			}
			var m map[string]any
			if dec.Decode(&m) != nil {
				return
			}
			for _, iss := range append([]string{issuer}, p.Authorities()...) {
				res, err := p.Evaluate(iss, m)
				switch {
				case err == nil:
					if res.Authority != p.Authorities()[res.Index] {
						t.Fatalf("Result %+v does not name its authority", res)
					}
				case !errors.Is(err, ErrNoAuthority) && !errors.Is(err, ErrNotSatisfied):
					t.Fatalf("Evaluate error %v is neither sentinel", err)
				}
			}
		}
	})
}
