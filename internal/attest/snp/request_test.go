package snp_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/cvault/cvault/internal/attest/snp"
	"github.com/cvault/cvault/internal/sim"
	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify/testdata"
	"github.com/google/go-sev-guest/verify/trust"
)

// realChainPEM is VCEK‖ASK‖ARK as MAA clients send it.
func realChainPEM() []byte {
	milan := trust.DefaultRootCerts["Milan"]
	var b []byte
	for _, der := range [][]byte{testdata.VcekBytes, milan.ProductCerts.Ask.Raw, milan.ProductCerts.Ark.Raw} {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return b
}

func realRequest(t testing.TB) []byte {
	body, err := snp.Request{Report: testdata.AttestationBytes[:abi.ReportSize], CertChain: realChainPEM(), Nonce: "12"}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestParseRequestShapes(t *testing.T) {
	raw := testdata.AttestationBytes[:abi.ReportSize]
	bundle := `  {"SnpReport":"` + base64.URLEncoding.EncodeToString(raw) + `","VcekCertChain":"` +
		base64.URLEncoding.EncodeToString(realChainPEM()) + `"}  ` // padded, wrapped in whitespace (MAA example)
	rt := []byte(`{"keys":[{"kid":"k","kty":"RSA"}]}`)
	tests := []struct {
		name      string
		body      string
		nonce     string
		runtime   bool
		withChain bool
	}{
		{"bundle padded, nonce number beyond float64", `{"report":"` + base64.URLEncoding.EncodeToString([]byte(bundle)) +
			`","runtimeData":{"data":"` + base64.URLEncoding.EncodeToString(rt) + `","dataType":"JSON"},` +
			`"initTimeData":{"data":"","dataType":""},"nonce":18446744073709551615}`, "18446744073709551615", true, true},
		{"bundle unpadded, nonce string", `{"report":"` + base64.RawURLEncoding.EncodeToString([]byte(bundle)) +
			`","runtimeData":{"data":"` + base64.RawURLEncoding.EncodeToString(rt) + `","dataType":"json"},"nonce":"abc"}`, "abc", true, true},
		{"raw report, no nonce", `{"report":"` + base64.RawURLEncoding.EncodeToString(raw) + `"}`, "", false, false},
		{"Request.Marshal", string(realRequest(t)), "12", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := snp.ParseRequest([]byte(tt.body))
			if err != nil {
				t.Fatalf("ParseRequest = %v", err)
			}
			if !bytes.Equal(ev.Report, raw) || ev.Nonce != tt.nonce || (ev.RuntimeData != nil) != tt.runtime {
				t.Fatalf("parsed report equal %v, nonce %q, runtime %v", bytes.Equal(ev.Report, raw), ev.Nonce, ev.RuntimeData)
			}
			if ev.InitTimeData != nil {
				t.Error("empty initTimeData should be absent")
			}
			if tt.withChain {
				if !bytes.Equal(ev.Certs.VCEK, testdata.VcekBytes) || len(ev.Certs.ASK) == 0 || len(ev.Certs.ARK) == 0 {
					t.Fatal("chain not sorted into VCEK/ASK/ARK")
				}
				ev.RuntimeData = nil // the real report does not bind our made-up runtime data
				if _, err := snp.Verify(context.Background(), ev, snp.Options{Now: realNow}); err != nil {
					t.Fatalf("Verify(parsed) = %v", err)
				}
			}
		})
	}
}

func TestParseRequestExtendedReport(t *testing.T) {
	// Raw report followed by the GET_EXT_REPORT certificate table.
	p := platform(t)
	ev := simEvidence(t, p, sim.Options{}, nil)
	table := abi.CertsFromProto(&spb.CertificateChain{VcekCert: ev.Certs.VCEK, AskCert: ev.Certs.ASK, ArkCert: ev.Certs.ARK}).Marshal()
	body, _ := json.Marshal(map[string]string{"report": base64.RawURLEncoding.EncodeToString(append(append([]byte{}, ev.Report...), table...))})
	got, err := snp.ParseRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Certs.VCEK, ev.Certs.VCEK) || !bytes.Equal(got.Certs.ARK, ev.Certs.ARK) {
		t.Fatal("certificate table not decoded")
	}
	if _, err := snp.Verify(context.Background(), got, snp.Options{ExtraRoots: simRoots(t, p)}); err != nil {
		t.Fatal(err)
	}
}

func TestParseRequestErrors(t *testing.T) {
	raw := base64.RawURLEncoding.EncodeToString(testdata.AttestationBytes[:abi.ReportSize])
	for name, body := range map[string]string{
		"not json":          `{`,
		"no report":         `{}`,
		"bad base64":        `{"report":"***"}`,
		"short report":      `{"report":"AAAA"}`,
		"bad runtime type":  `{"report":"` + raw + `","runtimeData":{"data":"AA","dataType":"XML"}}`,
		"runtime not json":  `{"report":"` + raw + `","runtimeData":{"data":"AA","dataType":"JSON"}}`,
		"nonce object":      `{"report":"` + raw + `","nonce":{}}`,
		"bundle bad report": `{"report":"` + base64.RawURLEncoding.EncodeToString([]byte(`{"SnpReport":"AAAA"}`)) + `"}`,
		"bundle bad chain": `{"report":"` + base64.RawURLEncoding.EncodeToString([]byte(`{"SnpReport":"`+raw+`","VcekCertChain":"`+
			base64.RawURLEncoding.EncodeToString([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))+`"}`)) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			ev, err := snp.ParseRequest([]byte(body))
			if !errors.Is(err, snp.ErrMalformedRequest) || ev != nil {
				t.Fatalf("ParseRequest = %v, %v; want ErrMalformedRequest", ev, err)
			}
		})
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add(realRequest(f))
	f.Add([]byte(`{"report":"` + base64.RawURLEncoding.EncodeToString(testdata.AttestationBytes[:abi.ReportSize]) + `","nonce":1}`))
	f.Add([]byte(`{"report":"e30","runtimeData":{"data":"e30","dataType":"JSON"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := snp.ParseRequest(body)
		if (err == nil) == (ev == nil) {
			t.Fatalf("ParseRequest = %v, %v: exactly one must be nil", ev, err)
		}
		if err != nil {
			return
		}
		if len(ev.Report) != abi.ReportSize {
			t.Fatalf("accepted a %d-byte report", len(ev.Report))
		}
		// Whatever parses must round-trip through the client-side encoder.
		var chain []byte
		for _, der := range [][]byte{ev.Certs.VCEK, ev.Certs.VLEK, ev.Certs.ASK, ev.Certs.ASVK, ev.Certs.ARK} {
			if len(der) > 0 {
				chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
			}
		}
		var rt []byte
		if ev.RuntimeData != nil {
			rt = ev.RuntimeData.Bytes
		}
		again, err := snp.Request{Report: ev.Report, CertChain: chain, RuntimeData: rt, Nonce: ev.Nonce}.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		ev2, err := snp.ParseRequest(again)
		if err != nil || !bytes.Equal(ev2.Report, ev.Report) || ev2.Nonce != ev.Nonce {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzParseReport drives the report parser path (abi.ReportToProto, the certificate table, and
// Verify's format checks) with raw report bytes as a client would send them.
func FuzzParseReport(f *testing.F) {
	f.Add(testdata.AttestationBytes[:abi.ReportSize])
	f.Add(testdata.AttestationBytes)
	f.Add(make([]byte, abi.ReportSize))
	f.Fuzz(func(t *testing.T, raw []byte) {
		body := []byte(`{"report":"` + base64.RawURLEncoding.EncodeToString(raw) + `"}`)
		ev, err := snp.ParseRequest(body)
		if err != nil {
			if ev != nil {
				t.Fatal("result with error")
			}
			return
		}
		v, err := snp.Verify(context.Background(), ev, snp.Options{Now: realNow})
		if err == nil && !strings.HasPrefix(string(raw), string(testdata.AttestationBytes[:0x2A0])) {
			t.Fatalf("Verify accepted fuzzed bytes: %+v", v.Report)
		}
	})
}
