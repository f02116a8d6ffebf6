package tdx_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cvault/cvault/internal/attest"
	"github.com/cvault/cvault/internal/attest/tdx"
	"github.com/google/go-tdx-guest/testing/testdata"
)

// now is inside the real quote's PCK chain validity (leaf to 2029-09-20).
var now = func() time.Time { return time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC) }

func realQuote() []byte { return bytes.Clone(testdata.RawQuote) }

func wantCheck(t *testing.T, err error, check string) {
	t.Helper()
	var ee *tdx.EvidenceError
	if !errors.As(err, &ee) || ee.Check != check {
		t.Fatalf("error = %v, want *EvidenceError{Check: %q}", err, check)
	}
}

func TestVerifyRealQuote(t *testing.T) {
	body := `{"quote":"` + base64.RawURLEncoding.EncodeToString(realQuote()) + `","nonce":42}`
	ev, err := tdx.ParseRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	v, err := tdx.Verify(context.Background(), ev, tdx.Options{Now: now})
	if err != nil {
		t.Fatalf("Verify(real SPR quote) = %v", err)
	}
	c := tdx.Claims(v, tdx.ClaimOptions{})
	b := v.Quote.GetTdQuoteBody()
	for k, want := range map[string]any{
		"x-ms-attestation-type": "tdxvm",
		"x-cvault-simulated":    false,
		"tdx_mrtd":              fmt.Sprintf("%x", b.GetMrTd()),
		"tdx_report_data":       fmt.Sprintf("%x", b.GetReportData()),
		"tdx_rtmr3":             fmt.Sprintf("%x", b.GetRtmrs()[3]),
		"tdx_xfam":              fmt.Sprintf("%x", b.GetXfam()),
	} {
		if c[k] != want {
			t.Errorf("claim %s = %v, want %v", k, c[k], want)
		}
	}
	if len(c["tdx_mrtd"].(string)) != 96 {
		t.Errorf("tdx_mrtd = %v", c["tdx_mrtd"])
	}
	if (c["dbgstat"] == "enabled") != v.Debuggable() || c["tdx_td_attributes_debug"] != v.Debuggable() {
		t.Error("debug claims disagree")
	}
	if v.Nonce != "42" {
		t.Errorf("nonce = %q", v.Nonce)
	}
}

func TestVerifyRefusals(t *testing.T) {
	otherRoot := x509.NewCertPool() // trusts nothing
	tests := []struct {
		name  string
		ev    func() *tdx.Evidence
		o     tdx.Options
		check string
	}{
		{"flipped header byte", func() *tdx.Evidence { q := realQuote(); q[10] ^= 1; return &tdx.Evidence{Quote: q} }, tdx.Options{Now: now}, tdx.CheckSignature},
		{"flipped mrtd byte", func() *tdx.Evidence { q := realQuote(); q[48+136] ^= 1; return &tdx.Evidence{Quote: q} }, tdx.Options{Now: now}, tdx.CheckSignature},
		{"flipped report data", func() *tdx.Evidence { q := realQuote(); q[48+520] ^= 0x80; return &tdx.Evidence{Quote: q} }, tdx.Options{Now: now}, tdx.CheckSignature},
		{"untrusted root", func() *tdx.Evidence { return &tdx.Evidence{Quote: realQuote()} }, tdx.Options{Now: now, Roots: otherRoot}, tdx.CheckChain},
		{"expired PCK", func() *tdx.Evidence { return &tdx.Evidence{Quote: realQuote()} },
			tdx.Options{Now: func() time.Time { return time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC) }}, tdx.CheckChain},
		{"runtime data not bound", func() *tdx.Evidence {
			return &tdx.Evidence{Quote: realQuote(), RuntimeData: &attest.Data{Bytes: []byte(`{"keys":[]}`), JSON: true}}
		}, tdx.Options{Now: now}, tdx.CheckReportData},
		{"truncated", func() *tdx.Evidence { return &tdx.Evidence{Quote: realQuote()[:600]} }, tdx.Options{Now: now}, tdx.CheckFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tdx.Verify(context.Background(), tt.ev(), tt.o)
			wantCheck(t, err, tt.check)
		})
	}
	// Signed region: header (48) + TD quote body (584). Flip with a stride of 7 bytes.
	for i := 0; i < 48+584; i += 7 {
		q := realQuote()
		q[i] ^= 0x01
		if _, err := tdx.Verify(context.Background(), &tdx.Evidence{Quote: q}, tdx.Options{Now: now}); err == nil {
			t.Fatalf("flipping byte %d was accepted", i)
		}
	}
}

func TestParseTdxRequestErrors(t *testing.T) {
	for name, body := range map[string]string{
		"not json":   `[`,
		"no quote":   `{}`,
		"bad base64": `{"quote":"%%"}`,
		"short":      `{"quote":"AAAA"}`,
		"bad data":   `{"quote":"` + base64.RawURLEncoding.EncodeToString(testdata.RawQuote) + `","runtimeData":{"data":"AA","dataType":"JSON"}}`,
	} {
		if ev, err := tdx.ParseRequest([]byte(body)); !errors.Is(err, tdx.ErrMalformedRequest) || ev != nil {
			t.Errorf("%s: ParseRequest = %v, %v", name, ev, err)
		}
	}
}

func FuzzParseTdxRequest(f *testing.F) {
	q := base64.RawURLEncoding.EncodeToString(testdata.RawQuote)
	f.Add([]byte(`{"quote":"` + q + `","runtimeData":{"data":"e30","dataType":"JSON"},"nonce":"1"}`))
	f.Add([]byte(`{"quote":"` + base64.URLEncoding.EncodeToString(testdata.RawQuote) + `"}`))
	f.Add([]byte(`{"quote":"` + strings.Repeat("A", 1000) + `"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := tdx.ParseRequest(body)
		if (err == nil) == (ev == nil) {
			t.Fatalf("ParseRequest = %v, %v: exactly one must be nil", ev, err)
		}
		if err != nil {
			return
		}
		// Whatever parses must be safe to verify.
		_, _ = tdx.Verify(context.Background(), ev, tdx.Options{Now: now})
	})
}
