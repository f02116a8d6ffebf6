package sim_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"flag"
	"testing"

	"github.com/cvault/cvault/internal/attest/snp"
	"github.com/cvault/cvault/internal/sim"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
)

// TestNoGlobalFlags: importing sim must not add std flags that could collide with a test
// binary's or a command's own (go-sev-guest's `testing` package would add -product & co.).
func TestNoGlobalFlags(t *testing.T) {
	for _, name := range []string{"product", "product_name", "test_use_kds", "test_kds"} {
		if flag.Lookup(name) != nil {
			t.Errorf("flag -%s is registered by an import of sim", name)
		}
	}
}

func TestReportLayout(t *testing.T) {
	p, err := sim.New(sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	o := sim.Options{
		ReportData: [64]byte{0: 1, 63: 2}, Measurement: [48]byte{0: 3, 47: 4}, HostData: [32]byte{0: 5},
		FamilyID: [16]byte{6}, ImageID: [16]byte{7}, IDKeyDigest: [48]byte{8}, AuthorKeyDigest: [48]byte{9},
		GuestSVN: 10, VMPL: 1, Debug: true, SMT: true, TCB: kds.TCBParts{BlSpl: 1, TeeSpl: 2, SnpSpl: 3, UcodeSpl: 4},
	}
	raw, chain, err := p.Report(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != abi.ReportSize {
		t.Fatalf("report is %d bytes", len(raw))
	}
	le32 := func(off int) uint32 { return binary.LittleEndian.Uint32(raw[off:]) }
	le64 := func(off int) uint64 { return binary.LittleEndian.Uint64(raw[off:]) }
	tcb, _ := kds.ComposeTCBParts(o.TCB)
	checks := []struct {
		name      string
		got, want any
	}{
		{"version", le32(0x00), uint32(3)},
		{"guest_svn", le32(0x04), uint32(10)},
		{"policy debug", le64(0x08) & (1 << 19), uint64(1 << 19)},
		{"policy smt", le64(0x08) & (1 << 16), uint64(1 << 16)},
		{"policy migrate", le64(0x08) & (1 << 18), uint64(0)},
		{"vmpl", le32(0x30), uint32(1)},
		{"signature_algo", le32(0x34), uint32(1)},
		{"current_tcb", le64(0x38), uint64(tcb)},
		{"reported_tcb", le64(0x180), uint64(tcb)},
		{"family_id", raw[0x10], byte(6)},
		{"image_id", raw[0x20], byte(7)},
		{"report_data", [2]byte{raw[0x50], raw[0x8F]}, [2]byte{1, 2}},
		{"measurement", [2]byte{raw[0x90], raw[0xBF]}, [2]byte{3, 4}},
		{"host_data", raw[0xC0], byte(5)},
		{"id_key_digest", raw[0xE0], byte(8)},
		{"author_key_digest", raw[0x110], byte(9)},
		{"cpuid family/model (Milan)", [2]byte{raw[0x188], raw[0x189]}, [2]byte{0x19, 0x01}},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	chip := p.ChipID()
	if !bytes.Equal(raw[0x1A0:0x1E0], chip[:]) {
		t.Error("chip_id not at 0x1A0")
	}
	if _, err := abi.ReportToProto(raw); err != nil {
		t.Errorf("go-sev-guest rejects the layout: %v", err)
	}
	vcek, err := x509.ParseCertificate(chain.VCEK)
	if err != nil {
		t.Fatal(err)
	}
	exts, err := kds.VcekCertificateExtensions(vcek)
	if err != nil || exts.TCBVersion != tcb || !bytes.Equal(exts.HWID, chip[:]) {
		t.Errorf("VCEK extensions = %+v, %v", exts, err)
	}

	v2, _, err := p.Report(sim.Options{Version: 2})
	if err != nil {
		t.Fatal(err)
	}
	if binary.LittleEndian.Uint32(v2) != 2 || v2[0x188] != 0 {
		t.Error("v2 report must carry no CPUID")
	}
	if _, _, err := p.Report(sim.Options{Version: 4}); err == nil {
		t.Error("version 4 accepted")
	}
}

func TestDeterministicRoot(t *testing.T) {
	a, _ := sim.New(sim.Config{})
	b, _ := sim.New(sim.Config{})
	if !bytes.Equal(a.RootPEM(), b.RootPEM()) {
		t.Fatal("RootPEM differs between instances")
	}
	if _, err := sim.New(sim.Config{ProductLine: "Venice"}); err == nil {
		t.Error("unknown product line accepted")
	}
	all, err := sim.AllRootsPEM()
	if err != nil {
		t.Fatal(err)
	}
	roots, err := snp.ParseRoots(all, true)
	if err != nil || len(roots) != len(sim.ProductLines()) {
		t.Fatalf("ParseRoots(AllRootsPEM) = %d roots, %v", len(roots), err)
	}
	// Two separately created platforms are the same machine: a report from one verifies
	// under the root exported by the other (a guest process vs. the server's trust file).
	raw, chain, err := a.Report(sim.Options{VLEK: true})
	if err != nil {
		t.Fatal(err)
	}
	rootsB, _ := snp.ParseRoots(b.RootPEM(), true)
	ev := &snp.Evidence{Report: raw, Certs: snp.Certs{VLEK: chain.VLEK}}
	v, err := snp.Verify(context.Background(), ev, snp.Options{ExtraRoots: rootsB})
	if err != nil || !v.Simulated || v.Signer != "VLEK" {
		t.Fatalf("Verify = %+v, %v", v, err)
	}
}
