package snp_test

import (
	"context"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cvault/cvault/internal/attest"
	"github.com/cvault/cvault/internal/attest/snp"
	"github.com/cvault/cvault/internal/sim"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/verify/testdata"
	"github.com/google/go-sev-guest/verify/trust"
)

// realNow is inside the real Milan VCEK's validity (2022-09-24 .. 2029-09-24).
var realNow = func() time.Time { return time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC) }

func realEvidence() *snp.Evidence {
	milan := trust.DefaultRootCerts["Milan"]
	return &snp.Evidence{
		Report: append([]byte(nil), testdata.AttestationBytes[:abi.ReportSize]...),
		Certs:  snp.Certs{VCEK: testdata.VcekBytes, ASK: milan.ProductCerts.Ask.Raw, ARK: milan.ProductCerts.Ark.Raw},
	}
}

var simOnce = sync.OnceValues(func() (*sim.Platform, error) { return sim.New(sim.Config{}) })

func platform(t testing.TB) *sim.Platform {
	t.Helper()
	p, err := simOnce()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func simRoots(t testing.TB, p *sim.Platform) []snp.Root {
	t.Helper()
	roots, err := snp.ParseRoots(p.RootPEM(), true)
	if err != nil {
		t.Fatal(err)
	}
	return roots
}

func simEvidence(t testing.TB, p *sim.Platform, o sim.Options, runtime []byte) *snp.Evidence {
	t.Helper()
	if runtime != nil {
		sum := sha256.Sum256(runtime)
		copy(o.ReportData[:], sum[:])
	}
	raw, chain, err := p.Report(o)
	if err != nil {
		t.Fatal(err)
	}
	ev := &snp.Evidence{Report: raw, Certs: snp.Certs{VCEK: chain.VCEK, VLEK: chain.VLEK, ASK: chain.ASK, ASVK: chain.ASVK, ARK: chain.ARK}}
	if runtime != nil {
		ev.RuntimeData = &attest.Data{Bytes: runtime, JSON: true}
	}
	return ev
}

func wantCheck(t *testing.T, err error, check string) {
	t.Helper()
	var ee *snp.EvidenceError
	if !errors.As(err, &ee) {
		t.Fatalf("error = %v, want *EvidenceError{Check: %q}", err, check)
	}
	if ee.Check != check {
		t.Fatalf("Check = %q, want %q (%v)", ee.Check, check, err)
	}
}

func TestVerifyRealMilanReport(t *testing.T) {
	v, err := snp.Verify(context.Background(), realEvidence(), snp.Options{Now: realNow})
	if err != nil {
		t.Fatalf("Verify(real Milan report) = %v", err)
	}
	if v.Simulated || v.ProductLine != "Milan" || v.Signer != "VCEK" {
		t.Errorf("Verified = simulated %v, line %q, signer %q; want false, Milan, VCEK", v.Simulated, v.ProductLine, v.Signer)
	}
	c := snp.Claims(v, snp.ClaimOptions{})
	if c["x-ms-sevsnpvm-is-debuggable"] != true || c["x-ms-sevsnpvm-smt-allowed"] != true {
		t.Errorf("real report policy 0xb0000 should be debuggable and SMT: %v %v", c["x-ms-sevsnpvm-is-debuggable"], c["x-ms-sevsnpvm-smt-allowed"])
	}
	if !strings.HasPrefix(c["x-ms-sevsnpvm-launchmeasurement"].(string), "b07af962") {
		t.Errorf("launchmeasurement = %v", c["x-ms-sevsnpvm-launchmeasurement"])
	}
	if _, ok := c["x-ms-compliance-status"]; ok {
		t.Error("a debuggable VM must not be azure-compliant-cvm")
	}
	if c["x-ms-sevsnpvm-bootloader-svn"] != 2 || c["x-ms-sevsnpvm-snpfw-svn"] != 5 || c["x-ms-sevsnpvm-microcode-svn"] != 68 {
		t.Errorf("svn claims = bl %v snp %v ucode %v, want 2 5 68 (the VCEK's TCB)", c["x-ms-sevsnpvm-bootloader-svn"], c["x-ms-sevsnpvm-snpfw-svn"], c["x-ms-sevsnpvm-microcode-svn"])
	}
}

func TestVerifyRealReportExpired(t *testing.T) {
	late := func() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) }
	_, err := snp.Verify(context.Background(), realEvidence(), snp.Options{Now: late})
	wantCheck(t, err, snp.CheckChain)
}

// TestRealReportByteFlips flips every byte of the signed part (0x000..0x29F) of the genuine
// report, one at a time; each must be refused. The chain is cached, so each case costs one
// ECDSA P-384 verify; the full loop (672 cases) runs even under -race.
func TestRealReportByteFlips(t *testing.T) {
	cache := snp.NewChainCache(8)
	o := snp.Options{Now: realNow, Cache: cache}
	if _, err := snp.Verify(context.Background(), realEvidence(), o); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 0x2A0; i++ {
		ev := realEvidence()
		ev.Report[i] ^= 0x01
		if _, err := snp.Verify(context.Background(), ev, o); err == nil {
			t.Fatalf("flipping byte %#x was accepted", i)
		}
	}
	// The signature itself (r at 0x2A0, s at 0x2E8).
	for _, i := range []int{0x2A0, 0x2C0, 0x2E8, 0x310} {
		ev := realEvidence()
		ev.Report[i] ^= 0x80
		_, err := snp.Verify(context.Background(), ev, o)
		wantCheck(t, err, snp.CheckSignature)
	}
}

func TestVerifySimulated(t *testing.T) {
	p := platform(t)
	runtime := []byte(`{"keys":[{"kid":"k1","kty":"RSA","key_ops":["encrypt"],"e":"AQAB","n":"xyz"}],"vm-configuration":{"tpm-enabled":true}}`)
	o := sim.Options{Measurement: [48]byte{1, 2, 3}, HostData: [32]byte{9}, GuestSVN: 7, SMT: true, FamilyID: [16]byte{1}, ImageID: [16]byte{2}}
	for _, tc := range []struct {
		name    string
		version uint32
		vlek    bool
	}{{"v3-vcek", 3, false}, {"v2-vcek", 2, false}, {"v3-vlek", 3, true}} {
		t.Run(tc.name, func(t *testing.T) {
			o := o
			o.Version, o.VLEK = tc.version, tc.vlek
			ev := simEvidence(t, p, o, runtime)
			ev.Nonce = "n-1"
			v, err := snp.Verify(context.Background(), ev, snp.Options{ExtraRoots: simRoots(t, p)})
			if err != nil {
				t.Fatalf("Verify(sim) = %v", err)
			}
			if !v.Simulated || v.ProductLine != "Milan" || v.Nonce != "n-1" {
				t.Errorf("simulated %v line %q nonce %q", v.Simulated, v.ProductLine, v.Nonce)
			}
			c := snp.Claims(v, snp.ClaimOptions{PolicyText: "p"})
			tcb := sim.DefaultTCB()
			want := map[string]any{
				"x-ms-attestation-type":           "sevsnpvm",
				"x-ms-compliance-status":          "azure-compliant-cvm",
				"x-cvault-simulated":              true,
				"x-ms-ver":                        "1.0",
				"x-ms-sevsnpvm-launchmeasurement": fmt.Sprintf("%x", o.Measurement),
				"x-ms-sevsnpvm-hostdata":          fmt.Sprintf("%x", o.HostData),
				"x-ms-sevsnpvm-familyId":          "01000000000000000000000000000000",
				"x-ms-sevsnpvm-imageId":           "02000000000000000000000000000000",
				"x-ms-sevsnpvm-guestsvn":          7,
				"x-ms-sevsnpvm-vmpl":              0,
				"x-ms-sevsnpvm-is-debuggable":     false,
				"x-ms-sevsnpvm-migration-allowed": false,
				"x-ms-sevsnpvm-smt-allowed":       true,
				"x-ms-sevsnpvm-bootloader-svn":    int(tcb.BlSpl),
				"x-ms-sevsnpvm-tee-svn":           int(tcb.TeeSpl),
				"x-ms-sevsnpvm-snpfw-svn":         int(tcb.SnpSpl),
				"x-ms-sevsnpvm-microcode-svn":     int(tcb.UcodeSpl),
				"x-ms-sevsnpvm-reportdata":        fmt.Sprintf("%x", v.Report.GetReportData()),
				"x-ms-sevsnpvm-reportid":          fmt.Sprintf("%x", v.Report.GetReportId()),
				"x-ms-sevsnpvm-idkeydigest":       strings.Repeat("0", 96),
				"x-ms-sevsnpvm-authorkeydigest":   strings.Repeat("0", 96),
				"x-ms-policy-hash":                attest.PolicyHash("p"),
			}
			for k, w := range want {
				if c[k] != w {
					t.Errorf("claim %s = %#v, want %#v", k, c[k], w)
				}
			}
			rt, ok := c["x-ms-runtime"].(map[string]any)
			if !ok || rt["keys"] == nil {
				t.Errorf("x-ms-runtime = %#v, want the runtime JSON with keys", c["x-ms-runtime"])
			}
			sum := sha256.Sum256(runtime)
			if !strings.HasPrefix(c["x-ms-sevsnpvm-reportdata"].(string), fmt.Sprintf("%x", sum)) {
				t.Error("reportdata does not start with SHA-256(runtimeData)")
			}
		})
	}
}

func TestVerifyAlwaysChecks(t *testing.T) {
	p := platform(t)
	roots := simRoots(t, p)
	runtime := []byte(`{"keys":[]}`)
	tests := []struct {
		name  string
		ev    func() *snp.Evidence
		roots []snp.Root
		check string
	}{
		{"bad signature", func() *snp.Evidence {
			ev := simEvidence(t, p, sim.Options{}, runtime)
			ev.Report[0x90] ^= 1 // measurement
			return ev
		}, roots, snp.CheckSignature},
		{"unknown root (sim without --trust-sim-root)", func() *snp.Evidence { return simEvidence(t, p, sim.Options{}, runtime) }, nil, snp.CheckChain},
		{"wrong report data", func() *snp.Evidence {
			ev := simEvidence(t, p, sim.Options{}, runtime)
			ev.RuntimeData = &attest.Data{Bytes: []byte(`{"keys":[1]}`), JSON: true}
			return ev
		}, roots, snp.CheckReportData},
		{"wrong host data", func() *snp.Evidence {
			ev := simEvidence(t, p, sim.Options{}, runtime)
			ev.InitTimeData = &attest.Data{Bytes: []byte("x")}
			return ev
		}, roots, snp.CheckHostData},
		{"VCEK for another TCB", func() *snp.Evidence {
			ev := simEvidence(t, p, sim.Options{}, runtime)
			_, other, err := p.Report(sim.Options{TCB: kds.TCBParts{BlSpl: 1, SnpSpl: 1, UcodeSpl: 1}})
			if err != nil {
				t.Fatal(err)
			}
			ev.Certs.VCEK = other.VCEK // same key, other TCB: signature and chain hold
			return ev
		}, roots, snp.CheckTCB},
		{"missing VCEK", func() *snp.Evidence {
			ev := simEvidence(t, p, sim.Options{}, runtime)
			ev.Certs.VCEK = nil
			return ev
		}, roots, snp.CheckCertificate},
		{"VLEK report with VCEK only", func() *snp.Evidence {
			ev := simEvidence(t, p, sim.Options{VLEK: true}, runtime)
			ev.Certs.VCEK, ev.Certs.VLEK = ev.Certs.VLEK, nil
			return ev
		}, roots, snp.CheckCertificate},
		{"short report", func() *snp.Evidence { return &snp.Evidence{Report: make([]byte, 100)} }, roots, snp.CheckFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := snp.Verify(context.Background(), tt.ev(), snp.Options{ExtraRoots: tt.roots})
			wantCheck(t, err, tt.check)
		})
	}
}

// TestVerifyWrongProductRoot: a Genoa report (CPUID says Genoa) is refused when only Milan's
// (simulated) root is trusted, and a Milan chain is refused under a Genoa ARK relabelled Milan.
func TestVerifyWrongProductRoot(t *testing.T) {
	milan := platform(t)
	genoa, err := sim.New(sim.Config{ProductLine: "Genoa"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = snp.Verify(context.Background(), simEvidence(t, genoa, sim.Options{}, nil), snp.Options{ExtraRoots: simRoots(t, milan)})
	wantCheck(t, err, snp.CheckChain)

	relabelled := simRoots(t, genoa)
	for i := range relabelled {
		relabelled[i].ProductLine = "Milan"
	}
	_, err = snp.Verify(context.Background(), simEvidence(t, milan, sim.Options{}, nil), snp.Options{ExtraRoots: relabelled})
	wantCheck(t, err, snp.CheckChain)

	// The real Milan VCEK under Genoa's real ARK (relabelled Milan) alone: AMD's Milan root is
	// always tried first and verifies it, so check the negative via the sim Genoa root instead.
	if _, err := snp.Verify(context.Background(), simEvidence(t, genoa, sim.Options{}, nil), snp.Options{ExtraRoots: simRoots(t, genoa)}); err != nil {
		t.Fatalf("Genoa sim report under its own root: %v", err)
	}
}

type kdsGetter map[string][]byte

func (g kdsGetter) Get(url string) ([]byte, error) {
	if b, ok := g[url]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("fake KDS: 404 %s", url)
}

func TestVerifyFetchesMissingVCEK(t *testing.T) {
	p := platform(t)
	ev := simEvidence(t, p, sim.Options{}, nil)
	vcek := ev.Certs.VCEK
	ev.Certs = snp.Certs{}
	chip := p.ChipID()
	tcb, _ := kds.ComposeTCBParts(sim.DefaultTCB())
	getter := kdsGetter{kds.VCEKCertURL("Milan", chip[:], tcb): vcek}
	if _, err := snp.Verify(context.Background(), ev, snp.Options{ExtraRoots: simRoots(t, p), Getter: getter}); err != nil {
		t.Fatalf("Verify with KDS getter = %v", err)
	}
	_, err := snp.Verify(context.Background(), ev, snp.Options{ExtraRoots: simRoots(t, p)})
	wantCheck(t, err, snp.CheckCertificate) // offline by default
}

func TestPolicy(t *testing.T) {
	p := platform(t)
	roots := simRoots(t, p)
	verified := func(o sim.Options) *snp.Verified {
		v, err := snp.Verify(context.Background(), simEvidence(t, p, o, nil), snp.Options{ExtraRoots: roots})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	good := [48]byte{0xaa}
	refs := snp.References{Measurements: [][]byte{good[:]}}
	strict := snp.Policy{MinimumTCB: sim.DefaultTCB(), References: refs}
	tests := []struct {
		name      string
		o         sim.Options
		checks    []string
		compliant bool
	}{
		{"good", sim.Options{Measurement: good}, nil, true},
		{"debug on", sim.Options{Measurement: good, Debug: true}, []string{"debug"}, false},
		{"migration agent", sim.Options{Measurement: good, MigrateMA: true}, []string{"migration-agent"}, false},
		{"vmpl 2", sim.Options{Measurement: good, VMPL: 2}, []string{"vmpl"}, false},
		{"low TCB", sim.Options{Measurement: good, TCB: kds.TCBParts{BlSpl: 1, SnpSpl: 1, UcodeSpl: 1}}, []string{"minimum-tcb"}, true},
		{"wrong measurement", sim.Options{Measurement: [48]byte{0xbb}}, []string{"measurement"}, false},
		{"everything wrong", sim.Options{Debug: true, SMT: true, Version: 2, TCB: kds.TCBParts{BlSpl: 1}},
			[]string{"debug", "smt", "minimum-tcb", "measurement"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := verified(tt.o)
			err := snp.Validate(v, strict)
			var got []string
			for _, e := range unjoin(err) {
				var pe *snp.PolicyError
				if !errors.As(e, &pe) || !errors.Is(e, snp.ErrPolicy) {
					t.Fatalf("not a *PolicyError: %v", e)
				}
				got = append(got, pe.Check)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.checks) {
				t.Errorf("Validate failed checks = %v, want %v (%v)", got, tt.checks, err)
			}
			if c := snp.Compliant(v, refs); c != tt.compliant {
				t.Errorf("Compliant = %v, want %v", c, tt.compliant)
			}
			if err := snp.Validate(v, snp.Permissive()); err != nil && tt.o.VMPL <= 3 {
				t.Errorf("Permissive refused: %v", err)
			}
		})
	}
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestParseRoots(t *testing.T) {
	amd, err := snp.AMDRoots()
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]bool{}
	for _, r := range amd {
		if r.ARK == nil || r.ASK == nil || r.ASVK == nil || r.Simulated {
			t.Errorf("AMD root %s incomplete: %+v", r.ProductLine, r)
		}
		lines[r.ProductLine] = true
	}
	if !lines["Milan"] || !lines["Genoa"] || !lines["Turin"] {
		t.Errorf("AMD roots lines = %v", lines)
	}
	if _, err := snp.ParseRoots(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: testdata.VcekBytes}), true); err == nil {
		t.Error("a VCEK was accepted as a root")
	}
	if _, err := snp.ParseRoots(nil, true); err == nil {
		t.Error("empty root file accepted")
	}
}

// TestVerifyBareGenoaProductName: some real Genoa VCEKs name the product "Genoa" without a
// stepping; a v3 report's CPUID names the line, so such a VCEK still verifies (design §6).
// A v2 report has no CPUID, and go-sev-guest then rejects the bare name.
func TestVerifyBareGenoaProductName(t *testing.T) {
	p, err := sim.New(sim.Config{ProductLine: "Genoa", VCEKProductName: "Genoa"})
	if err != nil {
		t.Fatal(err)
	}
	roots := simRoots(t, p)
	v, err := snp.Verify(context.Background(), simEvidence(t, p, sim.Options{Version: 3}, nil), snp.Options{ExtraRoots: roots})
	if err != nil || v.ProductLine != "Genoa" {
		t.Fatalf("v3 with bare Genoa VCEK: %+v, %v", v, err)
	}
	_, err = snp.Verify(context.Background(), simEvidence(t, p, sim.Options{Version: 2}, nil), snp.Options{ExtraRoots: roots})
	wantCheck(t, err, snp.CheckChain)
}
