package azure

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
)

// MaxBody is the default request body limit (Key Vault's is about 1 MiB of
// JSON; ARM resources are far smaller). Disk page uploads use their own.
const MaxBody = 1 << 20

// DecodeJSON reads r's body (at most limit bytes; 0 = MaxBody) into v.
// Malformed JSON or wrong types → 400 with code badCode; oversized → 413.
// Unknown fields are ignored, as Azure ignores them. An empty body is
// treated as "{}" when emptyOK.
func DecodeJSON(r *http.Request, limit int64, badCode string, emptyOK bool, v any) error {
	raw, err := ReadBody(r, limit, badCode)
	if err != nil {
		return err
	}
	return UnmarshalJSON(raw, badCode, emptyOK, v)
}

// ReadBody is DecodeJSON's reading half: the whole body, at most limit
// bytes (0 = MaxBody; more is 413), for handlers that parse it themselves.
func ReadBody(r *http.Request, limit int64, badCode string) ([]byte, error) {
	if limit <= 0 {
		limit = MaxBody
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, Errorf(http.StatusBadRequest, badCode, "The request body could not be read.").Wrap(err)
	}
	if int64(len(raw)) > limit {
		return nil, Errorf(http.StatusRequestEntityTooLarge, CodeRequestTooLarge,
			"The request body is larger than the limit of %d bytes.", limit)
	}
	return raw, nil
}

// UnmarshalJSON is DecodeJSON's parsing half, for bodies already read.
func UnmarshalJSON(raw []byte, badCode string, emptyOK bool, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		if emptyOK {
			return nil
		}
		return Errorf(http.StatusBadRequest, badCode, "The request body is empty; a JSON object is required.")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return Errorf(http.StatusBadRequest, badCode, "The request content was invalid and could not be deserialized: %s", jsonProblem(err))
	}
	if dec.More() {
		return Errorf(http.StatusBadRequest, badCode, "The request content was invalid: trailing data after the JSON value.")
	}
	return nil
}

func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "(root)"
		}
		return "field '" + field + "' must be " + jsonKind(te.Type.Kind().String()) + ", got " + te.Value
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "syntax error at offset " + itoa(se.Offset) + ": " + se.Error()
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "unexpected end of JSON input"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonKind(k string) string {
	switch k {
	case "int", "int32", "int64", "uint", "uint32", "uint64", "float64", "float32":
		return "a number"
	case "bool":
		return "a boolean"
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	}
	return k
}

func itoa(n int64) string {
	var b [20]byte
	i := len(b)
	if n == 0 {
		return "0"
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
