package snp

import (
	"encoding/hex"

	"github.com/cvault/cvault/internal/attest"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
)

// ComplianceCVM is the x-ms-compliance-status value of a compliant confidential VM.
const ComplianceCVM = "azure-compliant-cvm"

// ClaimOptions carries what the claims need beyond the evidence.
type ClaimOptions struct {
	// References feed Compliant (x-ms-compliance-status).
	References References
	// PolicyText is the instance's policy text; x-ms-policy-hash is computed from it.
	PolicyText string
}

// Claims returns MAA's SevSnpVm token claims for v (wire §4.4): the x-ms-sevsnpvm-* claims
// with MAA's names and JSON types (lowercase hex, numbers, booleans), x-ms-attestation-type,
// x-ms-compliance-status (only when compliant), x-ms-runtime / x-ms-inittime (JSON runtime or
// init-time data), x-ms-ver, x-ms-policy-hash and x-cvault-simulated. The SVN claims come from
// REPORTED_TCB, the TCB the VCEK certifies (which TCB MAA uses is unconfirmed, wire §6).
func Claims(v *Verified, o ClaimOptions) map[string]any {
	r := v.Report
	pol, _ := abi.ParseSnpPolicy(r.GetPolicy())
	tcb := kds.DecomposeTCBVersion(kds.TCBVersion(r.GetReportedTcb()))
	c := map[string]any{
		"x-ms-ver":                        "1.0",
		"x-ms-attestation-type":           "sevsnpvm",
		"x-ms-policy-hash":                attest.PolicyHash(o.PolicyText),
		"x-cvault-simulated":              v.Simulated,
		"x-ms-sevsnpvm-authorkeydigest":   hex.EncodeToString(r.GetAuthorKeyDigest()),
		"x-ms-sevsnpvm-bootloader-svn":    int(tcb.BlSpl),
		"x-ms-sevsnpvm-familyId":          hex.EncodeToString(r.GetFamilyId()),
		"x-ms-sevsnpvm-guestsvn":          int(r.GetGuestSvn()),
		"x-ms-sevsnpvm-hostdata":          hex.EncodeToString(r.GetHostData()),
		"x-ms-sevsnpvm-idkeydigest":       hex.EncodeToString(r.GetIdKeyDigest()),
		"x-ms-sevsnpvm-imageId":           hex.EncodeToString(r.GetImageId()),
		"x-ms-sevsnpvm-is-debuggable":     pol.Debug,
		"x-ms-sevsnpvm-launchmeasurement": hex.EncodeToString(r.GetMeasurement()),
		"x-ms-sevsnpvm-microcode-svn":     int(tcb.UcodeSpl),
		"x-ms-sevsnpvm-migration-allowed": pol.MigrateMA,
		"x-ms-sevsnpvm-reportdata":        hex.EncodeToString(r.GetReportData()),
		"x-ms-sevsnpvm-reportid":          hex.EncodeToString(r.GetReportId()),
		"x-ms-sevsnpvm-smt-allowed":       pol.SMT,
		"x-ms-sevsnpvm-snpfw-svn":         int(tcb.SnpSpl),
		"x-ms-sevsnpvm-tee-svn":           int(tcb.TeeSpl),
		"x-ms-sevsnpvm-vmpl":              int(r.GetVmpl()),
	}
	if Compliant(v, o.References) {
		c["x-ms-compliance-status"] = ComplianceCVM
	}
	if obj, ok := attest.JSONValue(v.RuntimeData); ok {
		c["x-ms-runtime"] = obj
	}
	if obj, ok := attest.JSONValue(v.InitTimeData); ok {
		c["x-ms-inittime"] = obj
	}
	return c
}
