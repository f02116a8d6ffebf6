package policy

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/canonical golden files")

// testdataPolicies reads every real-world policy shape in testdata.
func testdataPolicies(tb testing.TB) map[string][]byte {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no testdata policies: %v", err)
	}
	out := make(map[string][]byte, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

func mustParse(tb testing.TB, s string) *Policy {
	tb.Helper()
	p, err := Parse([]byte(s))
	if err != nil {
		tb.Fatalf("Parse(%s): %v", s, err)
	}
	return p
}

func TestParseTestdata(t *testing.T) {
	want := map[string]struct {
		version     string
		authorities []string
	}{
		"aci-sidecar.json":    {Version1, []string{"https://sharedeus.eus.attest.azure.net"}},
		"azkeys-live.json":    {Version1, []string{"https://fakeattestation.example.net"}},
		"cvm-app.json":        {Version1, []string{"https://sharedweu.weu.attest.azure.net"}},
		"cvm-datadisk.json":   {Version1, []string{"https://sharedeus2.eus2.attest.azure.net/"}},
		"encfs-preview.json":  {VersionPreview, []string{"https://sharedneu.neu.attest.azure.net"}},
		"legacy-preview.json": {Version1, []string{"https://fakeattestation.example.net/"}},
		"no-version.json":     {Version1, []string{"https://fakeattestation.example.net/"}},
		"cvm-default.json": {Version1, []string{
			"https://sharedeus.eus.attest.azure.net/",
			"https://sharedweu.weu.attest.azure.net/",
			"https://sharedscus.scus.attest.azure.net/",
			"https://sharedeus2.eus2.attest.azure.net/",
		}},
	}
	for name, data := range testdataPolicies(t) {
		t.Run(name, func(t *testing.T) {
			w, ok := want[name]
			if !ok {
				t.Fatalf("testdata/%s has no expectation in this test", name)
			}
			p, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			if p.Version() != w.version {
				t.Errorf("Version() = %q, want %q", p.Version(), w.version)
			}
			if got := p.Authorities(); !reflect.DeepEqual(got, w.authorities) {
				t.Errorf("Authorities() = %q, want %q", got, w.authorities)
			}
			checkCanonical(t, p)

			golden := filepath.Join("testdata", "canonical", name)
			got := p.Canonical()
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			wantB, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, bytes.TrimSuffix(wantB, []byte("\n"))) {
				t.Errorf("Canonical() =\n%s\nwant (%s)\n%s", got, golden, wantB)
			}
		})
	}
}

// checkCanonical asserts the round-trip properties: Canonical parses, parses
// to an equal policy, and is a fixed point.
func checkCanonical(tb testing.TB, p *Policy) {
	tb.Helper()
	c := p.Canonical()
	q, err := Parse(c)
	if err != nil {
		tb.Fatalf("Parse(Canonical()) failed: %v\n%s", err, c)
	}
	if !reflect.DeepEqual(p, q) {
		tb.Errorf("Parse(Canonical()) differs from the policy\n%s", c)
	}
	if c2 := q.Canonical(); !bytes.Equal(c, c2) {
		tb.Errorf("Canonical not idempotent:\n%s\n%s", c, c2)
	}
}

func TestParseAccepts(t *testing.T) {
	const auth = `"authority":"https://maa.example"`
	for _, tt := range []struct {
		name, policy, canonical string
	}{
		{
			name:      "every operator",
			policy:    `{"version":"1.0.0","anyOf":[{` + auth + `,"allOf":[{"claim":"a","equals":"x"},{"claim":"b","notEquals":false},{"claim":"c","less":10},{"claim":"d","lessOrEquals":"10"},{"claim":"e","greater":-1.5},{"claim":"f","greaterOrEquals":1e3},{"claim":"g","exists":true}]}]}`,
			canonical: `{"version":"1.0.0","anyOf":[{"authority":"https://maa.example","allOf":[{"claim":"a","equals":"x"},{"claim":"b","notEquals":false},{"claim":"c","less":10},{"claim":"d","lessOrEquals":"10"},{"claim":"e","greater":-1.5},{"claim":"f","greaterOrEquals":1e3},{"claim":"g","exists":true}]}]}`,
		},
		{
			name:      "keys in any case, any order, version defaulted",
			policy:    `{"ANYOF":[{"allof":[{"Equals":"x","CLAIM":"a"},{"anyof":[{"claim":"b","exists":"false"}]}],"Authority":"https://maa.example/"}]}`,
			canonical: `{"version":"1.0.0","anyOf":[{"authority":"https://maa.example/","allOf":[{"claim":"a","equals":"x"},{"anyOf":[{"claim":"b","exists":"false"}]}]}]}`,
		},
		{
			name:      "legacy condition/value, operator in any case",
			policy:    `{"anyOf":[{` + auth + `,"anyOf":[{"claim":"sdk-test","condition":"Equals","value":true},{"value":"3","condition":"greaterOrEquals","claim":"svn"}]}]}`,
			canonical: `{"version":"1.0.0","anyOf":[{"authority":"https://maa.example","anyOf":[{"claim":"sdk-test","equals":true},{"claim":"svn","greaterOrEquals":"3"}]}]}`,
		},
		{
			name:      "strings escaped deterministically, big integers kept",
			policy:    `{"version":"0.2","anyOf":[{` + auth + `,"allOf":[{"claim":"a<b>&\"c\"","equals":"line\nbreak é"},{"claim":"n","equals":123456789012345678901234567890}]}]}`,
			canonical: `{"version":"0.2","anyOf":[{"authority":"https://maa.example","allOf":[{"claim":"a\u003cb\u003e\u0026\"c\"","equals":"line\nbreak é"},{"claim":"n","equals":123456789012345678901234567890}]}]}`,
		},
		{
			name:      "http authority with port and path",
			policy:    `{"anyOf":[{"authority":"http://127.0.0.1:8443/attest/default","allOf":[{"claim":"a","equals":""}]}]}`,
			canonical: `{"version":"1.0.0","anyOf":[{"authority":"http://127.0.0.1:8443/attest/default","allOf":[{"claim":"a","equals":""}]}]}`,
		},
		{
			name:      "nesting at the depth limit",
			policy:    nested(MaxDepth),
			canonical: nested(MaxDepth),
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := mustParse(t, tt.policy)
			if got := string(p.Canonical()); got != tt.canonical {
				t.Errorf("Canonical() =\n%s\nwant\n%s", got, tt.canonical)
			}
			checkCanonical(t, p)
		})
	}
}

// nested builds a canonical policy whose authority group holds groups nested
// depth deep in all (alternating allOf/anyOf).
func nested(depth int) string {
	inner := `{"claim":"a","equals":"x"}`
	for d := depth; d > 1; d-- {
		kind := "allOf"
		if d%2 == 0 {
			kind = "anyOf"
		}
		inner = `{"` + kind + `":[` + inner + `]}`
	}
	return `{"version":"1.0.0","anyOf":[{"authority":"https://maa.example","allOf":[` + inner + `]}]}`
}

// nestedPath is the path of the group in nested(MaxDepth+1) that lies at depth
// MaxDepth+1 (nested wraps inside out, so its outermost inner group is d=2).
func nestedPath() string {
	path := "anyOf[0].allOf[0]"
	for d := 2; d <= MaxDepth+1; d++ {
		kind := "allOf"
		if d%2 == 0 {
			kind = "anyOf"
		}
		path += "." + kind
		if d <= MaxDepth {
			path += "[0]"
		}
	}
	return path
}

func TestParseErrors(t *testing.T) {
	wrap := func(conds string) string {
		return `{"version":"1.0.0","anyOf":[{"authority":"https://maa.example","allOf":[` + conds + `]}]}`
	}
	for _, tt := range []struct {
		name, policy, path, reason string
	}{
		{"empty", ``, "", "unexpected end of input"},
		{"syntax", `{"anyOf":[}`, "anyOf", "invalid JSON at byte"},
		{"truncated", `{"anyOf":[{"authority":`, "anyOf[0].authority", "unexpected end"},
		{"trailing data", `{"anyOf":[]} {}`, "", "data after the policy"},
		{"not an object", `[]`, "", "must be a JSON object, not an array"},
		{"null", `null`, "", "not null"},
		{"missing anyOf", `{"version":"1.0.0"}`, "", "needs anyOf"},
		{"empty anyOf", `{"anyOf":[]}`, "anyOf", "non-empty array"},
		{"anyOf not array", `{"anyOf":{}}`, "anyOf", "non-empty array"},
		{"top-level allOf", `{"allOf":[],"anyOf":[{"authority":"https://a","allOf":[{"claim":"a","equals":1}]}]}`, "allOf", "top level is anyOf"},
		{"unknown top-level key", `{"anyOf":[{"authority":"https://a","allOf":[{"claim":"a","equals":1}]}],"contentType":"x"}`, "contentType", `unknown key "contentType"`},
		{"unsupported version", `{"version":"2.0","anyOf":[{"authority":"https://a","allOf":[{"claim":"a","equals":1}]}]}`, "version", `unsupported version "2.0"`},
		{"numeric version", `{"version":1,"anyOf":[{"authority":"https://a","allOf":[{"claim":"a","equals":1}]}]}`, "version", "must be a string"},
		{"authority entry not object", `{"anyOf":["https://a"]}`, "anyOf[0]", "must be an object"},
		{"authority missing", `{"anyOf":[{"allOf":[{"claim":"a","equals":1}]}]}`, "anyOf[0]", "needs an authority URL"},
		{"authority not string", `{"anyOf":[{"authority":1,"allOf":[{"claim":"a","equals":1}]}]}`, "anyOf[0].authority", "must be a string"},
		{"authority not https", `{"anyOf":[{"authority":"ftp://a","allOf":[{"claim":"a","equals":1}]}]}`, "anyOf[0].authority", "https URL"},
		{"authority relative", `{"anyOf":[{"authority":"maa.example","allOf":[{"claim":"a","equals":1}]}]}`, "anyOf[0].authority", "https URL"},
		{"authority with query", `{"anyOf":[{"authority":"https://a/?x=1","allOf":[{"claim":"a","equals":1}]}]}`, "anyOf[0].authority", "https://host[/path]"},
		{"authority with userinfo", `{"anyOf":[{"authority":"https://u@a","allOf":[{"claim":"a","equals":1}]}]}`, "anyOf[0].authority", "https://host[/path]"},
		{"authority both groups", `{"anyOf":[{"authority":"https://a","allOf":[{"claim":"a","equals":1}],"anyOf":[{"claim":"a","equals":1}]}]}`, "anyOf[0]", "not both"},
		{"authority no group", `{"anyOf":[{"authority":"https://a"}]}`, "anyOf[0]", "exactly one of allOf or anyOf"},
		{"authority unknown key", `{"anyOf":[{"authority":"https://a","claim":"x","allOf":[{"claim":"a","equals":1}]}]}`, "anyOf[0].claim", "unknown key"},
		{"empty allOf", `{"anyOf":[{"authority":"https://a","allOf":[]}]}`, "anyOf[0].allOf", "non-empty array"},
		{"condition not object", wrap(`"a"`), "anyOf[0].allOf[0]", "must be an object, not a string"},
		{"condition empty", wrap(`{}`), "anyOf[0].allOf[0]", "needs a claim, an allOf or an anyOf"},
		{"condition unknown key", wrap(`{"claim":"a","equals":"x"},{"claim":"b","equals":"y","comment":"z"}`), "anyOf[0].allOf[1].comment", `unknown key "comment"`},
		{"duplicate key", wrap(`{"claim":"a","equals":"x","equals":"y"}`), "anyOf[0].allOf[0].equals", "duplicate key"},
		{"duplicate key in another case", wrap(`{"claim":"a","claim":"b","equals":"x"}`), "anyOf[0].allOf[0].claim", "duplicate key"},
		{"no operator", wrap(`{"claim":"a"}`), "anyOf[0].allOf[0]", "needs one operator"},
		{"two operators", wrap(`{"claim":"a","equals":"x","notEquals":"y"}`), "anyOf[0].allOf[0].notEquals", "more than one operator"},
		{"value object", wrap(`{"claim":"a","equals":{"b":1}}`), "anyOf[0].allOf[0].equals", "not an object"},
		{"value array", wrap(`{"claim":"a","equals":["x"]}`), "anyOf[0].allOf[0].equals", "not an array"},
		{"value null", wrap(`{"claim":"a","equals":null}`), "anyOf[0].allOf[0].equals", "not null"},
		{"nested value error", wrap(`{"claim":"a","equals":"x"},{"anyOf":[{"claim":"b","equals":"y"},{"allOf":[{"claim":"c","equals":1},{"claim":"d","equals":[]}]}]}`), "anyOf[0].allOf[1].anyOf[1].allOf[1].equals", "not an array"},
		{"claim not string", wrap(`{"claim":1,"equals":"x"}`), "anyOf[0].allOf[0].claim", "must be a string"},
		{"claim empty", wrap(`{"claim":"","equals":"x"}`), "anyOf[0].allOf[0].claim", "not a dotted claim path"},
		{"claim empty segment", wrap(`{"claim":"x-ms-isolation-tee..x","equals":"x"}`), "anyOf[0].allOf[0].claim", "not a dotted claim path"},
		{"claim trailing dot", wrap(`{"claim":"a.","equals":"x"}`), "anyOf[0].allOf[0].claim", "not a dotted claim path"},
		{"exists non-boolean", wrap(`{"claim":"a","exists":"yes"}`), "anyOf[0].allOf[0].exists", "exists takes true or false"},
		{"ordering on text", wrap(`{"claim":"a","greater":"abc"}`), "anyOf[0].allOf[0].greater", "not a number"},
		{"ordering on boolean", wrap(`{"claim":"a","less":true}`), "anyOf[0].allOf[0].less", "not a number"},
		{"legacy bad operator", wrap(`{"claim":"a","condition":"matches","value":"x"}`), "anyOf[0].allOf[0].condition", "must name an operator"},
		{"legacy operator not string", wrap(`{"claim":"a","condition":1,"value":"x"}`), "anyOf[0].allOf[0].condition", "must name an operator"},
		{"legacy missing value", wrap(`{"claim":"a","condition":"equals"}`), "anyOf[0].allOf[0]", "needs a value"},
		{"legacy mixed with operator", wrap(`{"claim":"a","condition":"equals","value":"x","equals":"y"}`), "anyOf[0].allOf[0]", "no operator key"},
		{"legacy value object", wrap(`{"claim":"a","condition":"equals","value":{}}`), "anyOf[0].allOf[0].value", "not an object"},
		{"value without condition", wrap(`{"claim":"a","value":"x"}`), "anyOf[0].allOf[0].value", "legacy form"},
		{"group with claim", wrap(`{"claim":"a","allOf":[{"claim":"b","equals":1}]}`), "anyOf[0].allOf[0]", "only one allOf or anyOf"},
		{"group both kinds", wrap(`{"allOf":[{"claim":"b","equals":1}],"anyOf":[{"claim":"b","equals":1}]}`), "anyOf[0].allOf[0]", "only one allOf or anyOf"},
		{"group empty", wrap(`{"anyOf":[]}`), "anyOf[0].allOf[0].anyOf", "non-empty array"},
		{"too deep", nested(MaxDepth + 1), nestedPath(), "nested more than 32 deep"},
		{"JSON too deep", `{"anyOf":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`, "anyOf" + strings.Repeat("[0]", maxJSONDepth-1), "JSON nested too deeply"},
		{"too large", `{"anyOf":[` + strings.Repeat(" ", MaxSize) + `]}`, "", "more than the 131072 allowed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Parse([]byte(tt.policy))
			if p != nil {
				t.Errorf("Parse returned a policy with error %v", err)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse error = %v (%T), want *ParseError", err, err)
			}
			if pe.Path != tt.path {
				t.Errorf("Path = %q, want %q (error: %v)", pe.Path, tt.path, err)
			}
			if !strings.Contains(pe.Reason, tt.reason) {
				t.Errorf("Reason = %q, want it to contain %q", pe.Reason, tt.reason)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse([]byte(`{"version":"9","anyOf":[{"authority":"ftp://a","allOf":[{"claim":"a..b","equals":{}},{"claim":"c","greater":"x"},{"claim":"d"}]}]}`))
	var paths []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var pe *ParseError
		if !errors.As(e, &pe) {
			t.Fatalf("joined error %v is not a *ParseError", e)
		}
		paths = append(paths, pe.Path)
	}
	want := []string{
		"version",
		"anyOf[0].authority",
		"anyOf[0].allOf[0].claim",
		"anyOf[0].allOf[0].equals",
		"anyOf[0].allOf[1].greater",
		"anyOf[0].allOf[2]",
	}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("paths = %q\nwant %q", paths, want)
	}
	if msg := err.Error(); !strings.Contains(msg, "release policy: anyOf[0].allOf[1].greater: greater compares numbers") {
		t.Errorf("error text %q lacks the path-prefixed reason", msg)
	}
}

func TestParseErrorCap(t *testing.T) {
	conds := strings.Repeat(`{"claim":"a"},`, 50)
	_, err := Parse([]byte(`{"anyOf":[{"authority":"https://a","allOf":[` + conds + `{"claim":"a"}]}]}`))
	if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n != maxErrors {
		t.Errorf("got %d errors, want the cap %d", n, maxErrors)
	}
}
