package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Claim sets in the shapes of wire §4.4 (platform SNP token from MAA) and
// §4.6 (Azure CVM guest attestation), shortened.
const (
	snpClaims = `{"iss":"https://sharedeus.eus.attest.azure.net","x-ms-ver":"1.0",
		"x-ms-attestation-type":"sevsnpvm","x-ms-compliance-status":"azure-compliant-cvm",
		"x-ms-runtime":{"keys":[{"e":"AQAB","key_ops":["encrypt"],"kid":"HCLTransferKey","kty":"RSA","n":"ur08"}]},
		"x-ms-sevsnpvm-guestsvn":1,"x-ms-sevsnpvm-is-debuggable":false,"x-ms-sevsnpvm-microcode-svn":40,
		"x-ms-sevsnpvm-hostdata":"73973b78d70cc68353426de188db5dfc57e5b766e399935fb73a61127ea26d20",
		"x-ms-sevsnpvm-vmpl":0,"x-ms-sevsnpvm-smt-allowed":true}`
	aciClaims = `{"x-ms-attestation-type":"sevsnpvm","x-ms-compliance-status":"azure-compliant-uvm",
		"x-ms-sevsnpvm-hostdata":"73973b78d70cc68353426de188db5dfc57e5b766e399935fb73a61127ea26d20",
		"x-ms-sevsnpvm-is-debuggable":false,"x-ms-sevsnpvm-vmpl":0}`
	guestClaims = `{"x-ms-attestation-type":"azurevm","secureboot":true,"x-ms-azurevm-attested-pcrs":[0,1,2,3,4,5,6,7],
		"x-ms-isolation-tee":{"x-ms-attestation-type":"sevsnpvm","x-ms-compliance-status":"azure-compliant-cvm",
			"x-ms-runtime":{"keys":[{"kid":"HCLAkPub","kty":"RSA"}],"vm-configuration":{"secure-boot":true,"current-time":1662691445}}},
		"x-ms-runtime":{"client-payload":{"nonce":"MTIzNA=="},"keys":[{"kid":"TpmEphemeralEncryptionKey","kty":"RSA"}]}}`
	guestTDXClaims = `{"x-ms-attestation-type":"azurevm",
		"x-ms-isolation-tee":{"x-ms-attestation-type":"tdxvm","x-ms-compliance-status":"azure-compliant-cvm"}}`
)

// numbers says which decoders a case runs under: claims decoded with
// UseNumber (json.Number) and without (float64) should agree except where
// float64 loses precision.
type numbers uint8

const (
	bothDecoders numbers = iota
	onlyUseNumber
	onlyFloat64
)

func decodeClaims(tb testing.TB, s string, useNumber bool) map[string]any {
	tb.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	if useNumber {
		dec.UseNumber()
	}
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		tb.Fatalf("claims %s: %v", s, err)
	}
	return m
}

func testdataPolicy(tb testing.TB, name string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// one builds a policy for https://maa.example holding a single allOf.
func one(conds ...string) string {
	return `{"version":"1.0.0","anyOf":[{"authority":"https://maa.example","allOf":[` + strings.Join(conds, ",") + `]}]}`
}

type evalCase struct {
	name    string
	policy  string
	issuer  string // default https://maa.example
	claims  string
	numbers numbers
	wantErr error // nil, ErrNoAuthority or ErrNotSatisfied
	wantIdx int
	wantMsg string // substring of the error (or "" for none)
}

func runEvalCases(t *testing.T, cases []evalCase) {
	t.Helper()
	for _, tt := range cases {
		for _, useNumber := range []bool{true, false} {
			if (tt.numbers == onlyUseNumber && !useNumber) || (tt.numbers == onlyFloat64 && useNumber) {
				continue
			}
			t.Run(fmt.Sprintf("%s/useNumber=%v", tt.name, useNumber), func(t *testing.T) {
				t.Parallel()
				p := mustParse(t, tt.policy)
				issuer := tt.issuer
				if issuer == "" {
					issuer = "https://maa.example"
				}
				res, err := p.Evaluate(issuer, decodeClaims(t, tt.claims, useNumber))
				switch {
				case tt.wantErr == nil && err != nil:
					t.Fatalf("Evaluate: %v", err)
				case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
					t.Fatalf("Evaluate error = %v, want %v", err, tt.wantErr)
				case tt.wantErr == nil && res.Index != tt.wantIdx:
					t.Errorf("Result.Index = %d, want %d", res.Index, tt.wantIdx)
				case tt.wantErr == nil && res.Authority != p.Authorities()[res.Index]:
					t.Errorf("Result.Authority = %q, want %q", res.Authority, p.Authorities()[res.Index])
				}
				if tt.wantErr != nil && !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("error %q\nwant it to contain %q", err, tt.wantMsg)
				}
			})
		}
	}
}

func TestEvaluateRealPolicies(t *testing.T) {
	aci := testdataPolicy(t, "aci-sidecar.json")
	cvmDefault := testdataPolicy(t, "cvm-default.json")
	const aciIss = "https://sharedeus.eus.attest.azure.net"
	runEvalCases(t, []evalCase{
		{name: "aci satisfied (false vs \"false\", 0 vs \"0\")", policy: aci, issuer: aciIss, claims: aciClaims},
		{name: "aci issuer trailing slash and host case", policy: aci, issuer: "HTTPS://SharedEUS.eus.attest.azure.net/", claims: aciClaims},
		{
			name: "aci debuggable", policy: aci, issuer: aciIss, wantErr: ErrNotSatisfied,
			claims:  strings.Replace(aciClaims, `"x-ms-sevsnpvm-is-debuggable":false`, `"x-ms-sevsnpvm-is-debuggable":true`, 1),
			wantMsg: `release policy not satisfied: anyOf[0] (https://sharedeus.eus.attest.azure.net): allOf[2]: claim x-ms-sevsnpvm-is-debuggable = "true", want equals "false"`,
		},
		{
			name: "aci vmpl 2", policy: aci, issuer: aciIss, wantErr: ErrNotSatisfied,
			claims:  strings.Replace(aciClaims, `"x-ms-sevsnpvm-vmpl":0`, `"x-ms-sevsnpvm-vmpl":2`, 1),
			wantMsg: `allOf[3]: claim x-ms-sevsnpvm-vmpl = "2", want equals "0"`,
		},
		{
			name: "aci stale hostdata", policy: aci, issuer: aciIss, wantErr: ErrNotSatisfied,
			claims:  strings.Replace(aciClaims, `73973b78`, `00000000`, 1),
			wantMsg: `allOf[0]: claim x-ms-sevsnpvm-hostdata = "00000000d70c`,
		},
		{
			name: "aci CVM token is not a UVM", policy: aci, issuer: aciIss, claims: snpClaims, wantErr: ErrNotSatisfied,
			wantMsg: `allOf[1]: claim x-ms-compliance-status = "azure-compliant-cvm", want equals "azure-compliant-uvm"`,
		},
		{
			name: "aci unknown issuer", policy: aci, issuer: "https://evil.example", claims: aciClaims, wantErr: ErrNoAuthority,
			wantMsg: `issuer "https://evil.example" is not among the policy's authorities [https://sharedeus.eus.attest.azure.net]`,
		},
		{name: "aci issuer other path", policy: aci, issuer: aciIss + "/other", claims: aciClaims, wantErr: ErrNoAuthority},
		{name: "aci issuer http", policy: aci, issuer: "http://sharedeus.eus.attest.azure.net", claims: aciClaims, wantErr: ErrNoAuthority},
		{name: "aci empty issuer", policy: aci, issuer: " ", claims: aciClaims, wantErr: ErrNoAuthority},

		{name: "cvm app guest token", policy: testdataPolicy(t, "cvm-app.json"), issuer: "https://sharedweu.weu.attest.azure.net/", claims: guestClaims},
		{
			name: "cvm app platform token lacks nested claims", policy: testdataPolicy(t, "cvm-app.json"),
			issuer: "https://sharedweu.weu.attest.azure.net", claims: snpClaims, wantErr: ErrNotSatisfied,
			wantMsg: `allOf[0]: claim x-ms-isolation-tee.x-ms-attestation-type is missing, want equals "sevsnpvm"`,
		},
		{
			name: "cvm app tdx", policy: testdataPolicy(t, "cvm-app.json"),
			issuer: "https://sharedweu.weu.attest.azure.net", claims: guestTDXClaims, wantErr: ErrNotSatisfied,
			wantMsg: `claim x-ms-isolation-tee.x-ms-attestation-type = "tdxvm", want equals "sevsnpvm"`,
		},
		{name: "cvm datadisk sevsnp", policy: testdataPolicy(t, "cvm-datadisk.json"), issuer: "https://sharedeus2.eus2.attest.azure.net", claims: guestClaims},
		{name: "cvm datadisk tdx", policy: testdataPolicy(t, "cvm-datadisk.json"), issuer: "https://sharedeus2.eus2.attest.azure.net/", claims: guestTDXClaims},

		{name: "azure default sevsnp, issuer without slash", policy: cvmDefault, issuer: "https://sharedweu.weu.attest.azure.net", claims: snpClaims, wantIdx: 1},
		{name: "azure default tdx", policy: cvmDefault, issuer: "https://sharedeus2.eus2.attest.azure.net/",
			claims: `{"x-ms-attestation-type":"tdxvm","x-ms-compliance-status":"azure-compliant-cvm"}`, wantIdx: 3},
		{
			name: "azure default tdx where only sevsnp is listed", policy: cvmDefault, issuer: "https://sharedscus.scus.attest.azure.net/",
			claims: `{"x-ms-attestation-type":"tdxvm","x-ms-compliance-status":"azure-compliant-cvm"}`, wantErr: ErrNotSatisfied,
			wantMsg: `anyOf[2] (https://sharedscus.scus.attest.azure.net/): allOf[1]: anyOf[0]: claim x-ms-attestation-type = "tdxvm", want equals "sevsnpvm"`,
		},
		{
			name: "azure default guest token", policy: cvmDefault, issuer: "https://sharedeus.eus.attest.azure.net", claims: guestClaims, wantErr: ErrNotSatisfied,
			wantMsg: `anyOf[0] (https://sharedeus.eus.attest.azure.net/): allOf[0]: claim x-ms-compliance-status is missing`,
		},
		{
			name: "azure default trusted launch", policy: cvmDefault, issuer: "https://sharedeus.eus.attest.azure.net",
			claims: `{"x-ms-attestation-type":"azurevm","x-ms-compliance-status":"azure-compliant-cvm"}`, wantErr: ErrNotSatisfied,
			wantMsg: `allOf[1]: no anyOf member held (anyOf[0]: claim x-ms-attestation-type = "azurevm", want equals "tdxvm"; anyOf[1]: claim x-ms-attestation-type = "azurevm", want equals "sevsnpvm")`,
		},
		{
			name: "azure default unknown region", policy: cvmDefault, issuer: "https://cvault.example", claims: snpClaims, wantErr: ErrNoAuthority,
			wantMsg: `[https://sharedeus.eus.attest.azure.net/ https://sharedweu.weu.attest.azure.net/ https://sharedscus.scus.attest.azure.net/ https://sharedeus2.eus2.attest.azure.net/]`,
		},

		{name: "azkeys live sdk-test true", policy: testdataPolicy(t, "azkeys-live.json"), issuer: "https://fakeattestation.example.net/", claims: `{"sdk-test":true}`},
		{name: "azkeys live sdk-test \"true\"", policy: testdataPolicy(t, "azkeys-live.json"), issuer: "https://fakeattestation.example.net", claims: `{"sdk-test":"true"}`},
		{
			name: "azkeys live sdk-test false", policy: testdataPolicy(t, "azkeys-live.json"), issuer: "https://fakeattestation.example.net",
			claims: `{"sdk-test":false}`, wantErr: ErrNotSatisfied,
			wantMsg: `anyOf[0] (https://fakeattestation.example.net): anyOf[0]: claim sdk-test = "false", want equals "true"`,
		},
		{
			name: "azkeys live sdk-test missing", policy: testdataPolicy(t, "azkeys-live.json"), issuer: "https://fakeattestation.example.net",
			claims: `{}`, wantErr: ErrNotSatisfied, wantMsg: `claim sdk-test is missing, want equals "true"`,
		},
		{name: "legacy form", policy: testdataPolicy(t, "legacy-preview.json"), issuer: "https://fakeattestation.example.net", claims: `{"sdk-test":true}`},
		{
			name: "legacy form unsatisfied", policy: testdataPolicy(t, "legacy-preview.json"), issuer: "https://fakeattestation.example.net",
			claims: `{"sdk-test":"TRUE"}`, wantErr: ErrNotSatisfied, wantMsg: `claim sdk-test = "TRUE", want equals "true"`,
		},
		{name: "version 0.2", policy: testdataPolicy(t, "encfs-preview.json"), issuer: "https://sharedneu.neu.attest.azure.net",
			claims: `{"x-ms-attestation-type":"sevsnpvm","x-ms-sevsnpvm-hostdata":"4f6b4b5fc3a8e9b58f2b5fe1d9ab3d6ed4c3fdd8a1c8e9f0e1d2c3b4a5968778"}`},
		{name: "no version", policy: testdataPolicy(t, "no-version.json"), issuer: "https://fakeattestation.example.net", claims: `{"sdk-test":true}`},
	})
}

func TestEvaluateOperators(t *testing.T) {
	runEvalCases(t, []evalCase{
		// equals: canonical text.
		{name: "equals number 0 vs claim 0", policy: one(`{"claim":"v","equals":0}`), claims: `{"v":0}`},
		{name: "equals number 0 vs claim \"0\"", policy: one(`{"claim":"v","equals":0}`), claims: `{"v":"0"}`},
		{name: "equals \"0\" vs claim 0.0", policy: one(`{"claim":"v","equals":"0"}`), claims: `{"v":0.0}`},
		{name: "equals \"0\" vs claim -0", policy: one(`{"claim":"v","equals":"0"}`), claims: `{"v":-0}`},
		{name: "equals number 1.0 vs claim 1", policy: one(`{"claim":"v","equals":1.0}`), claims: `{"v":1}`},
		{name: "equals 1e3 vs claim 1000", policy: one(`{"claim":"v","equals":1e3}`), claims: `{"v":1000}`},
		{name: "equals 1.5 vs claim 1.50", policy: one(`{"claim":"v","equals":1.5}`), claims: `{"v":1.50}`},
		{name: "equals string \"1.0\" is text, not number", policy: one(`{"claim":"v","equals":"1.0"}`), claims: `{"v":1}`,
			wantErr: ErrNotSatisfied, wantMsg: `claim v = "1", want equals "1.0"`},
		{name: "equals bool true vs \"true\"", policy: one(`{"claim":"v","equals":true}`), claims: `{"v":"true"}`},
		{name: "equals \"false\" vs false", policy: one(`{"claim":"v","equals":"false"}`), claims: `{"v":false}`},
		{name: "equals is case-sensitive", policy: one(`{"claim":"v","equals":"SevSnpVm"}`), claims: `{"v":"sevsnpvm"}`, wantErr: ErrNotSatisfied},
		{name: "equals large integer exact", policy: one(`{"claim":"nonce","equals":12345678901234567891}`), claims: `{"nonce":12345678901234567891}`, numbers: onlyUseNumber},
		{name: "equals large integer off by one", policy: one(`{"claim":"nonce","equals":12345678901234567892}`), claims: `{"nonce":12345678901234567891}`, numbers: onlyUseNumber,
			wantErr: ErrNotSatisfied, wantMsg: `claim nonce = "12345678901234567891", want equals "12345678901234567892"`},
		{name: "float64 claims lose large integers", policy: one(`{"claim":"nonce","equals":12345678901234567891}`), claims: `{"nonce":12345678901234567891}`, numbers: onlyFloat64,
			wantErr: ErrNotSatisfied, wantMsg: `claim nonce = "12345678901234567168"`},
		{name: "equals object claim", policy: one(`{"claim":"x-ms-runtime","equals":"x"}`), claims: snpClaims,
			wantErr: ErrNotSatisfied, wantMsg: `claim x-ms-runtime is an object, want equals "x"`},
		{name: "equals array claim", policy: one(`{"claim":"a","equals":"x"}`), claims: `{"a":["x"]}`,
			wantErr: ErrNotSatisfied, wantMsg: `claim a is an array`},
		{name: "equals null claim", policy: one(`{"claim":"a","equals":"x"}`), claims: `{"a":null}`,
			wantErr: ErrNotSatisfied, wantMsg: `claim a is null`},
		{name: "arrays are not indexed", policy: one(`{"claim":"x-ms-runtime.keys.0.kid","equals":"HCLTransferKey"}`), claims: snpClaims,
			wantErr: ErrNotSatisfied, wantMsg: `claim x-ms-runtime.keys.0.kid is missing`},
		{name: "path through a string is missing", policy: one(`{"claim":"x-ms-ver.minor","equals":"0"}`), claims: snpClaims,
			wantErr: ErrNotSatisfied, wantMsg: `is missing`},
		{name: "dotted path three deep", policy: one(`{"claim":"x-ms-isolation-tee.x-ms-runtime.vm-configuration.current-time","greaterOrEquals":1662691445}`), claims: guestClaims},

		// notEquals.
		{name: "notEquals differs", policy: one(`{"claim":"v","notEquals":"x"}`), claims: `{"v":"y"}`},
		{name: "notEquals same", policy: one(`{"claim":"v","notEquals":"x"}`), claims: `{"v":"x"}`,
			wantErr: ErrNotSatisfied, wantMsg: `claim v = "x", want notEquals "x"`},
		{name: "notEquals false vs true", policy: one(`{"claim":"x-ms-sevsnpvm-is-debuggable","notEquals":true}`), claims: snpClaims},
		{name: "notEquals missing claim fails", policy: one(`{"claim":"v","notEquals":"x"}`), claims: `{}`,
			wantErr: ErrNotSatisfied, wantMsg: `claim v is missing, want notEquals "x"`},
		{name: "notEquals object claim fails", policy: one(`{"claim":"v","notEquals":"x"}`), claims: `{"v":{}}`, wantErr: ErrNotSatisfied},

		// Ordering.
		{name: "less", policy: one(`{"claim":"v","less":10}`), claims: `{"v":9}`},
		{name: "less equal fails", policy: one(`{"claim":"v","less":10}`), claims: `{"v":10}`, wantErr: ErrNotSatisfied, wantMsg: `claim v = "10", want less "10"`},
		{name: "less numeric string claim", policy: one(`{"claim":"v","less":10}`), claims: `{"v":"9"}`},
		{name: "less non-numeric claim", policy: one(`{"claim":"v","less":10}`), claims: `{"v":"nine"}`,
			wantErr: ErrNotSatisfied, wantMsg: `claim v = "nine", want less "10" (not comparable as numbers)`},
		{name: "less bool claim", policy: one(`{"claim":"v","less":10}`), claims: `{"v":true}`, wantErr: ErrNotSatisfied, wantMsg: "not comparable"},
		{name: "less missing claim", policy: one(`{"claim":"v","less":10}`), claims: `{}`, wantErr: ErrNotSatisfied, wantMsg: "is missing"},
		{name: "lessOrEquals string policy value", policy: one(`{"claim":"v","lessOrEquals":"10"}`), claims: `{"v":10}`},
		{name: "lessOrEquals fraction", policy: one(`{"claim":"v","lessOrEquals":"10"}`), claims: `{"v":10.5}`, wantErr: ErrNotSatisfied},
		{name: "greater negative fraction", policy: one(`{"claim":"v","greater":-1.5}`), claims: `{"v":-1}`},
		{name: "greater negative fails", policy: one(`{"claim":"v","greater":-1.5}`), claims: `{"v":-2}`, wantErr: ErrNotSatisfied},
		{name: "greater negatives compare by magnitude", policy: one(`{"claim":"v","greater":-100}`), claims: `{"v":-99}`},
		{name: "greater mixed sign", policy: one(`{"claim":"v","greater":-1}`), claims: `{"v":0}`},
		{name: "greaterOrEquals exponent", policy: one(`{"claim":"v","greaterOrEquals":1e3}`), claims: `{"v":1000}`},
		{name: "greaterOrEquals below", policy: one(`{"claim":"v","greaterOrEquals":1e3}`), claims: `{"v":999.5}`, wantErr: ErrNotSatisfied},
		{name: "greaterOrEquals svn", policy: one(`{"claim":"x-ms-sevsnpvm-microcode-svn","greaterOrEquals":"40"}`), claims: snpClaims},
		{name: "greater big integers exact", policy: one(`{"claim":"n","greater":18446744073709551616}`), claims: `{"n":18446744073709551617}`, numbers: onlyUseNumber},
		{name: "greater big integers longer", policy: one(`{"claim":"n","greater":99999999999999999999}`), claims: `{"n":100000000000000000000}`},
		{name: "less big negative integers", policy: one(`{"claim":"n","less":-99999999999999999999}`), claims: `{"n":-100000000000000000000}`},

		// exists.
		{name: "exists true present", policy: one(`{"claim":"x-ms-runtime.keys","exists":true}`), claims: snpClaims},
		{name: "exists true missing", policy: one(`{"claim":"x-ms-runtime.keys","exists":true}`), claims: `{}`,
			wantErr: ErrNotSatisfied, wantMsg: `claim x-ms-runtime.keys is missing, want exists "true"`},
		{name: "exists \"false\" missing", policy: one(`{"claim":"x-ms-sevsnpvm-migration-allowed","exists":"false"}`), claims: snpClaims},
		{name: "exists false present", policy: one(`{"claim":"x-ms-sevsnpvm-vmpl","exists":false}`), claims: snpClaims,
			wantErr: ErrNotSatisfied, wantMsg: `claim x-ms-sevsnpvm-vmpl is present, want exists "false"`},
		{name: "exists null claim counts as present", policy: one(`{"claim":"v","exists":true}`), claims: `{"v":null}`},

		// Nesting: allOf in anyOf in allOf in anyOf.
		{
			name:   "nested satisfied by the inner allOf",
			policy: one(`{"anyOf":[{"allOf":[{"claim":"a","equals":1},{"anyOf":[{"claim":"b","equals":"x"},{"claim":"c","exists":true}]}]},{"claim":"d","equals":true}]}`, `{"claim":"e","greaterOrEquals":2}`),
			claims: `{"a":1,"c":{},"e":3}`,
		},
		{
			name:   "nested satisfied by the second anyOf member",
			policy: one(`{"anyOf":[{"allOf":[{"claim":"a","equals":1},{"anyOf":[{"claim":"b","equals":"x"},{"claim":"c","exists":true}]}]},{"claim":"d","equals":true}]}`, `{"claim":"e","greaterOrEquals":2}`),
			claims: `{"a":2,"d":"true","e":2}`,
		},
		{
			name:    "nested unsatisfied explains each level",
			policy:  one(`{"anyOf":[{"allOf":[{"claim":"a","equals":1},{"anyOf":[{"claim":"b","equals":"x"},{"claim":"c","exists":true}]}]},{"claim":"d","equals":true}]}`, `{"claim":"e","greaterOrEquals":2}`),
			claims:  `{"a":1,"b":"y","e":3}`,
			wantErr: ErrNotSatisfied,
			wantMsg: `anyOf[0] (https://maa.example): allOf[0]: no anyOf member held (anyOf[0]: allOf[1]: no anyOf member held (anyOf[0]: claim b = "y", want equals "x"; anyOf[1]: claim c is missing, want exists "true"); anyOf[1]: claim d is missing, want equals "true")`,
		},
		{
			name:    "nested later allOf member fails",
			policy:  one(`{"anyOf":[{"claim":"d","equals":true}]}`, `{"claim":"e","greaterOrEquals":2}`),
			claims:  `{"d":true,"e":1}`,
			wantErr: ErrNotSatisfied,
			wantMsg: `anyOf[0] (https://maa.example): allOf[1]: claim e = "1", want greaterOrEquals "2"`,
		},
		{name: "deepest nesting holds", policy: nested(MaxDepth), claims: `{"a":"x"}`},
		{name: "deepest nesting fails", policy: nested(MaxDepth), claims: `{"a":"y"}`, wantErr: ErrNotSatisfied, wantMsg: `claim a = "y", want equals "x"`},

		// Several authorities.
		{
			name:    "second entry for the same issuer holds",
			policy:  `{"anyOf":[{"authority":"https://maa.example/","allOf":[{"claim":"v","equals":1}]},{"authority":"https://maa.example","allOf":[{"claim":"v","equals":2}]}]}`,
			claims:  `{"v":2}`,
			wantIdx: 1,
		},
		{
			name:    "every entry for the issuer is explained",
			policy:  `{"anyOf":[{"authority":"https://maa.example/","allOf":[{"claim":"v","equals":1}]},{"authority":"https://other.example","allOf":[{"claim":"v","equals":3}]},{"authority":"https://maa.example","allOf":[{"claim":"v","equals":2}]}]}`,
			claims:  `{"v":3}`,
			wantErr: ErrNotSatisfied,
			wantMsg: `release policy not satisfied: anyOf[0] (https://maa.example/): allOf[0]: claim v = "3", want equals "1"; anyOf[2] (https://maa.example): allOf[0]: claim v = "3", want equals "2"`,
		},
	})
}

func TestEvaluateGoTypedClaims(t *testing.T) {
	p := mustParse(t, one(
		`{"claim":"i","equals":"7"}`, `{"claim":"i64","greater":-1}`, `{"claim":"u64","equals":18446744073709551615}`,
		`{"claim":"f32","equals":0.5}`, `{"claim":"u8","lessOrEquals":255}`, `{"claim":"n.b","equals":false}`,
		`{"claim":"num","equals":"12"}`,
	))
	claims := map[string]any{
		"i": 7, "i64": int64(0), "u64": uint64(math.MaxUint64), "f32": float32(0.5), "u8": uint8(255),
		"n": map[string]any{"b": false}, "num": json.Number("12"),
	}
	if _, err := p.Evaluate("https://maa.example", claims); err != nil {
		t.Fatal(err)
	}
	claims["num"] = json.Number("12x") // not a JSON number: has no text
	if _, err := p.Evaluate("https://maa.example", claims); !errors.Is(err, ErrNotSatisfied) {
		t.Fatalf("malformed json.Number: err = %v, want ErrNotSatisfied", err)
	}
	claims["num"] = math.NaN()
	if _, err := p.Evaluate("https://maa.example", claims); !errors.Is(err, ErrNotSatisfied) {
		t.Fatalf("NaN claim: err = %v, want ErrNotSatisfied", err)
	}
}

func TestEvaluateNilClaims(t *testing.T) {
	p := mustParse(t, one(`{"claim":"a","exists":false}`))
	if _, err := p.Evaluate("https://maa.example", nil); err != nil {
		t.Fatalf("exists:false on nil claims: %v", err)
	}
}

func TestNoAuthorityListIsAbridged(t *testing.T) {
	var entries []string
	for i := range 12 {
		entries = append(entries, fmt.Sprintf(`{"authority":"https://maa%d.example","allOf":[{"claim":"a","equals":1}]}`, i))
	}
	p := mustParse(t, `{"anyOf":[`+strings.Join(entries, ",")+`]}`)
	_, err := p.Evaluate("https://other.example", nil)
	if !errors.Is(err, ErrNoAuthority) {
		t.Fatalf("err = %v", err)
	}
	if want := "https://maa7.example … and 4 more]"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q lacks %q", err, want)
	}
}

func TestAuthorityMatching(t *testing.T) {
	for _, tt := range []struct {
		policy, issuer string
		match          bool
	}{
		{"https://maa.example", "https://maa.example", true},
		{"https://maa.example", "https://maa.example/", true},
		{"https://maa.example/", "https://maa.example", true},
		{"https://maa.example//", "https://maa.example", true},
		{"https://MAA.example", "hTTps://maa.EXAMPLE", true},
		{"https://maa.example/Attest/Default", "https://maa.example/Attest/Default/", true},
		{"https://maa.example/attest/default", "https://maa.example/Attest/Default", false},
		{"https://maa.example", "https://maa.example:443", false}, // ports compared as written
		{"https://maa.example", "http://maa.example", false},
		{"https://maa.example", "https://maa.example.evil", false},
		{"https://maa.example", "https://maa.example/x", false},
		{"https://maa.example", "maa.example", false},
		{"https://maa.example", "", false},
	} {
		got := splitAuthority(tt.policy).matches(splitAuthority(tt.issuer))
		if got != tt.match {
			t.Errorf("authority %q vs issuer %q: match = %v, want %v", tt.policy, tt.issuer, got, tt.match)
		}
	}
}

func TestCanonicalText(t *testing.T) {
	for _, tt := range []struct {
		in        any
		text, num string
		ok        bool
	}{
		{"abc", "abc", "", true},
		{"", "", "", true},
		{"0", "0", "0", true},
		{"-0", "-0", "0", true},
		{"1.50", "1.50", "1.5", true},
		{"007", "007", "", true}, // not a JSON number
		{" 1", " 1", "", true},
		{true, "true", "", true},
		{false, "false", "", true},
		{json.Number("0"), "0", "0", true},
		{json.Number("-0"), "0", "0", true},
		{json.Number("-0.0"), "0", "0", true},
		{json.Number("123456789012345678901234567890"), "123456789012345678901234567890", "123456789012345678901234567890", true},
		{json.Number("1e20"), "100000000000000000000", "100000000000000000000", true},
		{json.Number("2.5E-3"), "0.0025", "0.0025", true},
		{json.Number("1e400"), "1e400", "1e400", true}, // beyond float64: kept as written
		{json.Number("1x"), "", "", false},
		{float64(1e20), "100000000000000000000", "100000000000000000000", true},
		{float64(1 << 64), "18446744073709551616", "18446744073709551616", true},
		{float64(12345678901234567891), "12345678901234567168", "12345678901234567168", true},
		{0.1, "0.1", "0.1", true},
		{1e-7, "1e-07", "1e-07", true},
		{math.Inf(1), "", "", false},
		{-3, "-3", "-3", true},
		{uint64(math.MaxUint64), "18446744073709551615", "18446744073709551615", true},
		{int8(-8), "-8", "-8", true},
		{nil, "", "", false},
		{map[string]any{}, "", "", false},
		{[]any{}, "", "", false},
	} {
		text, num, ok := canonicalText(tt.in)
		if text != tt.text || num != tt.num || ok != tt.ok {
			t.Errorf("canonicalText(%#v) = %q, %q, %v; want %q, %q, %v", tt.in, text, num, ok, tt.text, tt.num, tt.ok)
		}
	}
}

func TestCompareNumbers(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
		ok   bool
	}{
		{"1", "2", -1, true},
		{"10", "9", 1, true},
		{"-10", "-9", -1, true},
		{"-1", "1", -1, true},
		{"0", "-5", 1, true},
		{"18446744073709551617", "18446744073709551616", 1, true},
		{"5", "5", 0, true},
		{"1.5", "2", -1, true},
		{"1e-07", "0", 1, true},
		{"1e400", "5", 0, false},
	} {
		got, ok := compareNumbers(tt.a, tt.b)
		if got != tt.want || ok != tt.ok {
			t.Errorf("compareNumbers(%q, %q) = %d, %v; want %d, %v", tt.a, tt.b, got, ok, tt.want, tt.ok)
		}
	}
}

func TestIsJSONNumber(t *testing.T) {
	for s, want := range map[string]bool{
		"0": true, "-0": true, "12": true, "1.5": true, "-1.5e+10": true, "1E5": true, "0.0": true,
		"": false, "-": false, "01": false, "1.": false, ".5": false, "1e": false, "1e+": false,
		"+1": false, "0x10": false, "1 ": false, "NaN": false, "Infinity": false, "١": false,
	} {
		if got := isJSONNumber(s); got != want {
			t.Errorf("isJSONNumber(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestCVMDefault(t *testing.T) {
	const auth = "https://cvault.example:8443/attest/default"
	got := CVMDefault(auth)
	want := `{"version":"1.0.0","anyOf":[{"authority":"https://cvault.example:8443/attest/default","allOf":[` +
		`{"claim":"x-ms-compliance-status","equals":"azure-compliant-cvm"},` +
		`{"anyOf":[{"claim":"x-ms-attestation-type","equals":"tdxvm"},{"claim":"x-ms-attestation-type","equals":"sevsnpvm"}]}]}]}`
	if string(got) != want {
		t.Fatalf("CVMDefault =\n%s\nwant\n%s", got, want)
	}
	p, err := Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Canonical(), got) {
		t.Errorf("CVMDefault is not canonical")
	}
	// Same conditions as each entry of Azure's own default policy.
	azure := mustParse(t, testdataPolicy(t, "cvm-default.json"))
	if !equalNodes(p.authorities[0].rule, azure.authorities[0].rule) {
		t.Errorf("CVMDefault conditions differ from Azure's default CVM policy entry")
	}
	for _, tt := range []struct {
		claims string
		ok     bool
	}{
		{snpClaims, true},
		{`{"x-ms-attestation-type":"tdxvm","x-ms-compliance-status":"azure-compliant-cvm"}`, true},
		{`{"x-ms-attestation-type":"sevsnpvm","x-ms-compliance-status":"azure-compliant-uvm"}`, false},
		{`{"x-ms-attestation-type":"azurevm","x-ms-compliance-status":"azure-compliant-cvm"}`, false},
		{guestClaims, false},
	} {
		_, err := p.Evaluate(auth+"/", decodeClaims(t, tt.claims, true))
		if (err == nil) != tt.ok {
			t.Errorf("claims %s: err = %v, want ok=%v", tt.claims, err, tt.ok)
		}
	}
}

func equalNodes(a, b node) bool {
	if a.kind != b.kind || a.claim != b.claim || a.op != b.op || a.val != b.val || len(a.members) != len(b.members) {
		return false
	}
	for i := range a.members {
		if !equalNodes(a.members[i], b.members[i]) {
			return false
		}
	}
	return true
}

// BenchmarkEvaluate measures the default CVM policy on a platform SNP token's
// claims. raw is the same check written out by hand; cvm-default-azure is
// Azure's multi-region policy with the issuer's entry last.
func BenchmarkEvaluate(b *testing.B) {
	claims := decodeClaims(b, snpClaims, true)
	const iss = "https://sharedeus.eus.attest.azure.net"
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			t := claims["x-ms-attestation-type"]
			if claims["x-ms-compliance-status"] != "azure-compliant-cvm" || (t != "tdxvm" && t != "sevsnpvm") {
				b.Fatal("not satisfied")
			}
		}
	})
	b.Run("cvm-default", func(b *testing.B) {
		p := mustParse(b, string(CVMDefault(iss)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Evaluate(iss+"/", claims); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cvm-default-azure", func(b *testing.B) {
		p := mustParse(b, testdataPolicy(b, "cvm-default.json"))
		iss := "https://sharedeus2.eus2.attest.azure.net"
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Evaluate(iss, claims); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cvm-default-unsatisfied", func(b *testing.B) {
		p := mustParse(b, string(CVMDefault(iss)))
		bad := decodeClaims(b, guestClaims, true)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Evaluate(iss, bad); err == nil {
				b.Fatal("satisfied")
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	data := []byte(testdataPolicy(b, "cvm-default.json"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
