// Package snp verifies AMD SEV-SNP attestation evidence the way Microsoft Azure Attestation's
// `attest/SevSnpVm` does (design §6, wire §4.2–4.4; seed 002: what SNP evidence proves about a
// confidential VM): it decodes MAA's request body, verifies the report signature and the
// VCEK/VLEK→ASK/ASVK→ARK chain against AMD's real roots (plus operator-supplied simulated roots),
// checks the TCB and the runtime-data binding, and turns the report into MAA's
// `x-ms-sevsnpvm-*` claims. Verify (cryptographic provenance) and Validate (an instance's policy
// over verified content) are separate, as in go-sev-guest, on which this package builds.
package snp

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/cvault/cvault/internal/attest"
	"github.com/google/go-sev-guest/abi"
)

// ErrMalformedRequest is wrapped by every ParseRequest error.
var ErrMalformedRequest = errors.New("malformed SevSnpVm attestation request")

// Evidence is a decoded SevSnpVm request: the report, the certificates that came with it, and
// the data the report is expected to bind.
type Evidence struct {
	// Report is the raw ATTESTATION_REPORT (abi.ReportSize bytes).
	Report []byte
	// Certs are the certificates sent with the report (DER). Only the VCEK or VLEK is used for
	// verification; the ASK/ARK sent by the client are never trusted (our roots are).
	Certs Certs
	// RuntimeData is bound by REPORT_DATA[0:32] = SHA-256(RuntimeData.Bytes); nil when not sent.
	RuntimeData *attest.Data
	// InitTimeData is bound by HOST_DATA = SHA-256(InitTimeData.Bytes); nil when not sent.
	InitTimeData *attest.Data
	// Nonce is the request's nonce as text (a JSON number keeps its exact digits); "" if none.
	Nonce string
	// DraftPolicy is the optional draftPolicyForAttestation text.
	DraftPolicy string
}

// Certs holds DER certificates of an SNP chain.
type Certs struct {
	VCEK, VLEK, ASK, ASVK, ARK []byte
}

type requestJSON struct {
	Report       string           `json:"report"`
	RuntimeData  *attest.DataJSON `json:"runtimeData"`
	InitTimeData *attest.DataJSON `json:"initTimeData"`
	Nonce        json.RawMessage  `json:"nonce"`
	DraftPolicy  string           `json:"draftPolicyForAttestation"`
}

// reportBundle is the JSON MAA clients (sidecar, cvm-attestation-tools, HCL) base64url-encode
// into `report`.
type reportBundle struct {
	SnpReport     string `json:"SnpReport"`
	VcekCertChain string `json:"VcekCertChain"`
	Endorsements  string `json:"Endorsements"`
}

// ParseRequest decodes a SevSnpVm request body (wire §4.2). `report` is base64url (padded or
// not) of either the JSON bundle {"SnpReport","VcekCertChain"} or the raw report, optionally
// followed by the GET_EXT_REPORT certificate table. `nonce` may be a JSON number or string.
func ParseRequest(body []byte) (*Evidence, error) {
	var req requestJSON
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedRequest, err)
	}
	if req.Report == "" {
		return nil, fmt.Errorf("%w: missing report", ErrMalformedRequest)
	}
	blob, err := attest.DecodeBase64(req.Report)
	if err != nil {
		return nil, fmt.Errorf("%w: report: %v", ErrMalformedRequest, err)
	}
	ev := &Evidence{DraftPolicy: req.DraftPolicy}
	if t := bytes.TrimSpace(blob); len(t) > 0 && t[0] == '{' {
		if err := ev.fromBundle(t); err != nil {
			return nil, err
		}
	} else if err := ev.fromRaw(blob); err != nil {
		return nil, err
	}
	if _, err := abi.ReportToProto(ev.Report); err != nil {
		return nil, fmt.Errorf("%w: report: %v", ErrMalformedRequest, err)
	}
	if ev.RuntimeData, err = attest.ParseData(req.RuntimeData); err != nil {
		return nil, fmt.Errorf("%w: runtimeData: %v", ErrMalformedRequest, err)
	}
	if ev.InitTimeData, err = attest.ParseData(req.InitTimeData); err != nil {
		return nil, fmt.Errorf("%w: initTimeData: %v", ErrMalformedRequest, err)
	}
	if ev.Nonce, err = attest.ParseNonce(req.Nonce); err != nil {
		return nil, fmt.Errorf("%w: nonce: %v", ErrMalformedRequest, err)
	}
	return ev, nil
}

func (ev *Evidence) fromBundle(b []byte) error {
	var bundle reportBundle
	if err := json.Unmarshal(b, &bundle); err != nil {
		return fmt.Errorf("%w: report bundle: %v", ErrMalformedRequest, err)
	}
	raw, err := attest.DecodeBase64(bundle.SnpReport)
	if err != nil {
		return fmt.Errorf("%w: SnpReport: %v", ErrMalformedRequest, err)
	}
	if len(raw) != abi.ReportSize {
		return fmt.Errorf("%w: SnpReport is %d bytes, want %d", ErrMalformedRequest, len(raw), abi.ReportSize)
	}
	ev.Report = raw
	if bundle.VcekCertChain == "" {
		return nil
	}
	chain, err := attest.DecodeBase64(bundle.VcekCertChain)
	if err != nil {
		return fmt.Errorf("%w: VcekCertChain: %v", ErrMalformedRequest, err)
	}
	if ev.Certs, err = ParseCertChain(chain); err != nil {
		return fmt.Errorf("%w: VcekCertChain: %v", ErrMalformedRequest, err)
	}
	return nil
}

// ParseRaw decodes a raw report, optionally followed by the certificate table that
// SNP_GET_EXT_REPORT and configfs-tsm's auxblob return (what a guest device yields).
func ParseRaw(b []byte) (*Evidence, error) {
	ev := &Evidence{}
	if err := ev.fromRaw(b); err != nil {
		return nil, err
	}
	if _, err := abi.ReportToProto(ev.Report); err != nil {
		return nil, fmt.Errorf("%w: report: %v", ErrMalformedRequest, err)
	}
	return ev, nil
}

func (ev *Evidence) fromRaw(b []byte) error {
	if len(b) < abi.ReportSize {
		return fmt.Errorf("%w: report is %d bytes, want %d", ErrMalformedRequest, len(b), abi.ReportSize)
	}
	ev.Report = b[:abi.ReportSize:abi.ReportSize]
	if len(b) == abi.ReportSize {
		return nil
	}
	var table abi.CertTable
	if err := table.Unmarshal(b[abi.ReportSize:]); err != nil {
		return fmt.Errorf("%w: certificate table: %v", ErrMalformedRequest, err)
	}
	chain := table.Proto()
	ev.Certs = Certs{VCEK: chain.GetVcekCert(), VLEK: chain.GetVlekCert(), ASK: chain.GetAskCert(), ARK: chain.GetArkCert()}
	return nil
}

// ParseCertChain sorts a PEM bundle (VCEK‖ASK‖ARK as MAA clients send it, in any order) into
// its roles by subject common name, as AMD names them.
func ParseCertChain(pemBytes []byte) (Certs, error) {
	var c Certs
	rest := pemBytes
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return Certs{}, err
		}
		switch cn := cert.Subject.CommonName; {
		case cn == "SEV-VCEK":
			c.VCEK = blk.Bytes
		case cn == "SEV-VLEK":
			c.VLEK = blk.Bytes
		case strings.HasPrefix(cn, "SEV-VLEK-"):
			c.ASVK = blk.Bytes
		case strings.HasPrefix(cn, "ARK-"):
			c.ARK = blk.Bytes
		case strings.HasPrefix(cn, "SEV-"):
			c.ASK = blk.Bytes
		}
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return Certs{}, errors.New("trailing data after PEM certificates")
	}
	return c, nil
}

// Request is the guest side of the SevSnpVm protocol: what a client sends.
type Request struct {
	Report      []byte // raw report
	CertChain   []byte // PEM, VCEK‖ASK‖ARK
	RuntimeData []byte // sent with dataType "JSON" if valid JSON, else "Binary"
	Nonce       string
}

// Marshal renders r in the shape real MAA clients send (bundle JSON, unpadded base64url).
func (r Request) Marshal() ([]byte, error) {
	enc := base64.RawURLEncoding
	bundle, err := json.Marshal(reportBundle{SnpReport: enc.EncodeToString(r.Report), VcekCertChain: enc.EncodeToString(r.CertChain)})
	if err != nil {
		return nil, err
	}
	out := map[string]any{"report": enc.EncodeToString(bundle)}
	if d := attest.MarshalData(r.RuntimeData); d != nil {
		out["runtimeData"] = d
	}
	if r.Nonce != "" {
		out["nonce"] = r.Nonce
	}
	return json.Marshal(out)
}
