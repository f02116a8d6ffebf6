// Package tdx verifies Intel TDX evidence the way Microsoft Azure Attestation's `attest/TdxVm`
// does (wire §4.5; seed 002: TDX confidential VMs prove they run on TDX hardware): it decodes
// the request, verifies the quote's signature and its PCK certificate chain to Intel's SGX
// root offline with go-tdx-guest, checks the runtime-data binding, and renders MAA's tdx_*
// claims. TCB status needs Intel PCS collateral, which this package does not fetch (offline by
// design), so `attester_tcb_status` is not emitted.
package tdx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cvault/cvault/internal/attest"
	"github.com/google/go-tdx-guest/abi"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/verify"
)

// intelRoot is the Intel SGX Root CA certificate (valid to 2049), copied from go-tdx-guest
// v0.3.2-0.20250814004405-ffb0869e6f4d verify/trusted_root.pem (Apache-2.0): passing it
// explicitly keeps go-tdx-guest from logging a warning on every verification.
//
//go:embed intel_sgx_root_ca.pem
var intelRootPEM []byte

var intelRoots = sync.OnceValues(func() (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(intelRootPEM) {
		return nil, errors.New("tdx: embedded Intel SGX root unparsable")
	}
	return pool, nil
})

// ErrMalformedRequest is wrapped by every ParseRequest error.
var ErrMalformedRequest = errors.New("malformed TdxVm attestation request")

// The always-checks.
const (
	CheckFormat     = "format"      // a parsable TDX quote v4
	CheckSignature  = "signature"   // quote signature by the attestation key
	CheckChain      = "chain"       // attestation key certified by the QE, QE report by a PCK chaining to Intel's root
	CheckReportData = "report-data" // REPORTDATA[0:32] = SHA-256(runtimeData)
)

// EvidenceError says which always-check refused the quote.
type EvidenceError struct {
	Check    string
	Expected string
	Seen     string
	Err      error
}

func (e *EvidenceError) Error() string {
	msg := fmt.Sprintf("TDX evidence refused by %s check: expected %s, seen %s", e.Check, e.Expected, e.Seen)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *EvidenceError) Unwrap() error { return e.Err }

// Evidence is a decoded TdxVm request.
type Evidence struct {
	Quote       []byte
	RuntimeData *attest.Data
	Nonce       string
}

type requestJSON struct {
	Quote       string           `json:"quote"`
	RuntimeData *attest.DataJSON `json:"runtimeData"`
	Nonce       json.RawMessage  `json:"nonce"`
}

// ParseRequest decodes a TdxVm request body `{"quote":b64url,"runtimeData":{data,dataType},"nonce"}`.
func ParseRequest(body []byte) (*Evidence, error) {
	var req requestJSON
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedRequest, err)
	}
	if req.Quote == "" {
		return nil, fmt.Errorf("%w: missing quote", ErrMalformedRequest)
	}
	q, err := attest.DecodeBase64(req.Quote)
	if err != nil {
		return nil, fmt.Errorf("%w: quote: %v", ErrMalformedRequest, err)
	}
	if _, err := abi.QuoteToProto(q); err != nil {
		return nil, fmt.Errorf("%w: quote: %v", ErrMalformedRequest, err)
	}
	ev := &Evidence{Quote: q}
	if ev.RuntimeData, err = attest.ParseData(req.RuntimeData); err != nil {
		return nil, fmt.Errorf("%w: runtimeData: %v", ErrMalformedRequest, err)
	}
	if ev.Nonce, err = attest.ParseNonce(req.Nonce); err != nil {
		return nil, fmt.Errorf("%w: nonce: %v", ErrMalformedRequest, err)
	}
	return ev, nil
}

// Options configure Verify.
type Options struct {
	// Now is the time at which the PCK chain must be valid; nil means time.Now.
	Now func() time.Time
	// Roots replaces Intel's SGX root (tests); nil means the embedded Intel root.
	Roots *x509.CertPool
}

// Verified is a quote that passed every always-check.
type Verified struct {
	Quote       *pb.QuoteV4
	RuntimeData *attest.Data
	Nonce       string
}

// Verify checks the quote's signature and certification chain offline and the runtime-data
// binding. MAA's rule for SNP (REPORT_DATA[0:32] = SHA-256(runtimeData)) is applied to TDX's
// REPORTDATA too; the wire notes confirm it for SNP only.
func Verify(ctx context.Context, ev *Evidence, o Options) (*Verified, error) {
	if ev == nil {
		return nil, &EvidenceError{Check: CheckFormat, Expected: "a TDX quote", Seen: "none"}
	}
	anyQuote, err := abi.QuoteToProto(ev.Quote)
	if err != nil {
		return nil, &EvidenceError{Check: CheckFormat, Expected: "a TDX quote v4", Seen: "an unparsable quote", Err: err}
	}
	quote, ok := anyQuote.(*pb.QuoteV4)
	if !ok {
		return nil, &EvidenceError{Check: CheckFormat, Expected: "a TDX quote v4", Seen: fmt.Sprintf("%T", anyQuote)}
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	roots := o.Roots
	if roots == nil {
		if roots, err = intelRoots(); err != nil {
			return nil, err
		}
	}
	t := now()
	opts := &verify.Options{TrustedRoots: roots, Now: &verify.TimeSet{PckCertChain: t, TcbInfo: t, QeIdentity: t, PckCrl: t, RootCaCrl: t}}
	if err := verify.TdxQuoteContext(ctx, quote, opts); err != nil {
		if errors.Is(err, verify.ErrHashVerificationFail) {
			return nil, &EvidenceError{Check: CheckSignature, Expected: "a quote signed by its attestation key", Seen: "an invalid signature", Err: err}
		}
		return nil, &EvidenceError{Check: CheckChain, Expected: "an attestation key certified through the QE report and PCK chain to Intel's SGX root",
			Seen: "a certification that does not verify", Err: err}
	}
	if d := ev.RuntimeData; d != nil && len(d.Bytes) > 0 {
		sum := sha256.Sum256(d.Bytes)
		if got := quote.GetTdQuoteBody().GetReportData()[:32]; !bytes.Equal(got, sum[:]) {
			return nil, &EvidenceError{Check: CheckReportData, Expected: fmt.Sprintf("REPORTDATA[0:32] = SHA-256(runtimeData) = %x", sum), Seen: fmt.Sprintf("%x", got)}
		}
	}
	return &Verified{Quote: quote, RuntimeData: ev.RuntimeData, Nonce: ev.Nonce}, nil
}

// TD_ATTRIBUTES bits (Intel TDX module ABI).
const (
	tdAttrDebug          = 0
	tdAttrSeptVEDisable  = 28
	tdAttrProtectionKeys = 30
	tdAttrKeyLocker      = 31
	tdAttrPerfmon        = 63
)

// Debuggable reports TD_ATTRIBUTES.DEBUG.
func (v *Verified) Debuggable() bool { return v.tdAttributes()&(1<<tdAttrDebug) != 0 }

func (v *Verified) tdAttributes() uint64 {
	a := v.Quote.GetTdQuoteBody().GetTdAttributes()
	if len(a) != 8 {
		return 0
	}
	return binary.LittleEndian.Uint64(a)
}

// ClaimOptions carries what the claims need beyond the evidence.
type ClaimOptions struct {
	PolicyText string // for x-ms-policy-hash
}

// Claims returns MAA's TdxVm claims for v (wire §4.5): tdx_* measurements and attributes as
// lowercase hex, the decoded TD attribute booleans, dbgstat, eat_profile, intuse,
// x-ms-attestation-type "tdxvm", x-ms-compliance-status (debug off), x-ms-runtime (JSON runtime
// data), x-ms-ver, x-ms-policy-hash and x-cvault-simulated (always false: there is no TDX
// simulator).
func Claims(v *Verified, o ClaimOptions) map[string]any {
	b := v.Quote.GetTdQuoteBody()
	attrs := v.tdAttributes()
	bit := func(n uint) bool { return attrs&(1<<n) != 0 }
	h := hex.EncodeToString
	svn := b.GetTeeTcbSvn()
	var seamSVN int
	if len(svn) >= 2 {
		seamSVN = int(svn[1])<<8 | int(svn[0]) // TEE_TCB_SVN[1].[0] = TDX module major.minor SVN
	}
	dbg := "disabled"
	if v.Debuggable() {
		dbg = "enabled"
	}
	c := map[string]any{
		"x-ms-ver":                          "1.0",
		"x-ms-attestation-type":             "tdxvm",
		"x-ms-policy-hash":                  attest.PolicyHash(o.PolicyText),
		"x-cvault-simulated":                false,
		"dbgstat":                           dbg,
		"eat_profile":                       "https://aka.ms/maa-eat-profile-tdxvm",
		"intuse":                            "generic",
		"tdx_mrtd":                          h(b.GetMrTd()),
		"tdx_mrconfigid":                    h(b.GetMrConfigId()),
		"tdx_mrowner":                       h(b.GetMrOwner()),
		"tdx_mrownerconfig":                 h(b.GetMrOwnerConfig()),
		"tdx_mrseam":                        h(b.GetMrSeam()),
		"tdx_mrsignerseam":                  h(b.GetMrSignerSeam()),
		"tdx_report_data":                   h(b.GetReportData()),
		"tdx_seam_attributes":               h(b.GetSeamAttributes()),
		"tdx_seamsvn":                       seamSVN,
		"tdx_td_attributes":                 h(b.GetTdAttributes()),
		"tdx_td_attributes_debug":           bit(tdAttrDebug),
		"tdx_td_attributes_key_locker":      bit(tdAttrKeyLocker),
		"tdx_td_attributes_perfmon":         bit(tdAttrPerfmon),
		"tdx_td_attributes_protection_keys": bit(tdAttrProtectionKeys),
		"tdx_td_attributes_septve_disable":  bit(tdAttrSeptVEDisable),
		"tdx_tee_tcb_svn":                   h(svn),
		"tdx_xfam":                          h(b.GetXfam()),
	}
	for i, r := range b.GetRtmrs() {
		c[fmt.Sprintf("tdx_rtmr%d", i)] = h(r)
	}
	if !v.Debuggable() {
		c["x-ms-compliance-status"] = "azure-compliant-cvm"
	}
	if obj, ok := attest.JSONValue(v.RuntimeData); ok {
		c["x-ms-runtime"] = obj
	}
	return c
}
