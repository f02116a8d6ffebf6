package kvhttp

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/cvault/cvault/internal/azure"
	"github.com/cvault/cvault/internal/jwk"
)

// decodeOp decodes a key operation's body. The bodies clients send are a
// flat object of plain ASCII strings, which scanOp reads without
// reflection; anything else (escapes, null, numbers, nesting, keys that
// only match case-insensitively, base64 that does not decode, malformed
// JSON) goes through the full decoder, so that every error and its message
// are exactly decode's.
func decodeOp(r *http.Request, b *opBody) error {
	raw, err := azure.ReadBody(r, 0, azure.CodeBadParameter)
	if err != nil {
		return err
	}
	if scanOp(raw, b) {
		return nil
	}
	*b = opBody{}
	return azure.UnmarshalJSON(raw, azure.CodeBadParameter, false, b)
}

// scanOp fills b from raw and reports true only when raw is an object
// whose members are all plain strings and encoding/json would decode it
// into the same opBody without error. On false, b is partly filled.
func scanOp(raw []byte, b *opBody) bool {
	i := skipWS(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return false
	}
	i = skipWS(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return skipWS(raw, i+1) == len(raw)
	}
	for {
		key, j, ok := plainString(raw, i)
		if !ok {
			return false
		}
		i = skipWS(raw, j)
		if i >= len(raw) || raw[i] != ':' {
			return false
		}
		val, j, ok := plainString(raw, skipWS(raw, i+1))
		if !ok || !setOp(b, key, val) {
			return false
		}
		i = skipWS(raw, j)
		if i >= len(raw) {
			return false
		}
		switch raw[i] {
		case '}':
			return skipWS(raw, i+1) == len(raw)
		case ',':
			i = skipWS(raw, i+1)
		default:
			return false
		}
	}
}

// setOp stores one member; false sends the body to the full decoder.
func setOp(b *opBody, key, val string) bool {
	var dst *jwk.Bytes
	switch key {
	case "alg":
		b.Alg = val
		return true
	case "value":
		dst = &b.Value
	case "digest":
		dst = &b.Digest
	case "iv":
		dst = &b.IV
	case "aad":
		dst = &b.AAD
	case "tag":
		dst = &b.Tag
	default:
		// encoding/json matches field names case-insensitively; an
		// unknown member is ignored.
		for _, f := range [...]string{"alg", "value", "digest", "iv", "aad", "tag"} {
			if strings.EqualFold(key, f) {
				return false
			}
		}
		return true
	}
	v, err := jwk.DecodeBase64(val)
	if err != nil {
		return false
	}
	*dst = v
	return true
}

// plainString reads a JSON string at raw[i] holding only printable ASCII
// without escapes, returning its text and the index after it.
func plainString(raw []byte, i int) (string, int, bool) {
	if i >= len(raw) || raw[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(raw); j++ {
		switch c := raw[j]; {
		case c == '"':
			return string(raw[i+1 : j]), j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return "", 0, false
		}
	}
	return "", 0, false
}

func skipWS(raw []byte, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r') {
		i++
	}
	return i
}

// appendJSON appends res as encoding/json would marshal it, without
// reflection and without json's re-validation of jwk.Bytes' output.
func (res *opResultJSON) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"kid":`...)
	dst = appendJSONString(dst, res.KID)
	dst = appendB64(append(dst, `,"value":`...), res.Value)
	for _, f := range [...]struct {
		name string
		v    jwk.Bytes
	}{{`,"iv":`, res.IV}, {`,"tag":`, res.Tag}, {`,"aad":`, res.AAD}} {
		if len(f.v) > 0 { // omitempty
			dst = appendB64(append(dst, f.name...), f.v)
		}
	}
	return append(dst, '}')
}

// appendB64 is jwk.Bytes.MarshalJSON (which encoding/json calls for nil too).
func appendB64(dst []byte, b jwk.Bytes) []byte {
	dst = append(dst, '"')
	dst = base64.RawURLEncoding.AppendEncode(dst, b)
	return append(dst, '"')
}

// appendJSONString quotes s as encoding/json does; the characters it would
// escape (and non-ASCII) take the encoding/json path.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(dst, q...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// writeOpResult is azure.WriteJSON(w, 200, res) for a key operation's result.
func writeOpResult(w http.ResponseWriter, res *opResultJSON) {
	b := res.appendJSON(make([]byte, 0, 64+len(res.KID)+4*(len(res.Value)+len(res.IV)+len(res.Tag)+len(res.AAD))/3))
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}
