package attest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Data is MAA's `{data, dataType}` pair (runtimeData, initTimeData), decoded.
type Data struct {
	Bytes []byte
	// JSON is true for dataType "JSON": Bytes is then valid JSON and becomes a claim.
	JSON bool
}

// DataJSON is the wire form of Data.
type DataJSON struct {
	Data     string `json:"data"`
	DataType string `json:"dataType"`
}

// ParseData decodes a `{data, dataType}` pair; absent or empty data (sidecar sends
// `{"data":"","dataType":""}`) is nil. dataType is "JSON" or "Binary" (any case, "" = Binary).
func ParseData(d *DataJSON) (*Data, error) {
	if d == nil || d.Data == "" {
		return nil, nil
	}
	b, err := DecodeBase64(d.Data)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.EqualFold(d.DataType, "JSON"):
		if !json.Valid(b) {
			return nil, errors.New(`dataType is "JSON" but data is not valid JSON`)
		}
		return &Data{Bytes: b, JSON: true}, nil
	case d.DataType == "" || strings.EqualFold(d.DataType, "Binary"):
		return &Data{Bytes: b}, nil
	default:
		return nil, fmt.Errorf("dataType %q is neither JSON nor Binary", d.DataType)
	}
}

// MarshalData is the client side of ParseData: unpadded base64url, "JSON" when b is valid JSON.
func MarshalData(b []byte) *DataJSON {
	if len(b) == 0 {
		return nil
	}
	typ := "Binary"
	if json.Valid(b) {
		typ = "JSON"
	}
	return &DataJSON{Data: base64.RawURLEncoding.EncodeToString(b), DataType: typ}
}

// ParseNonce returns a request nonce as text: a JSON string as is, a JSON number with its exact
// digits (the sidecar sends uint64 values beyond float64 precision), absent or null as "".
func ParseNonce(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return "", err
	}
	n, ok := v.(json.Number)
	if !ok {
		return "", errors.New("nonce is neither a number nor a string")
	}
	return n.String(), nil
}

// DecodeBase64 accepts base64url padded or not (sidecar pads, cvm-attestation-tools does not),
// and standard base64 too; whitespace is ignored.
func DecodeBase64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
			return -1
		}
		return r
	}, s)
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "+/") {
		return base64.RawStdEncoding.DecodeString(s)
	}
	return base64.RawURLEncoding.DecodeString(s)
}

// JSONValue decodes JSON runtime/init-time data for a claim (x-ms-runtime, x-ms-inittime),
// keeping numbers exact; ok is false for binary or absent data.
func JSONValue(d *Data) (v any, ok bool) {
	if d == nil || !d.JSON {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(d.Bytes))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	return v, true
}

// PolicyHash is MAA's x-ms-policy-hash: BASE64URL(SHA256(UTF8(BASE64URL(UTF8(policy))))).
func PolicyHash(policy string) string {
	inner := base64.RawURLEncoding.EncodeToString([]byte(policy))
	sum := sha256.Sum256([]byte(inner))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
