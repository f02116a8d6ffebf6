package azure

import (
	"encoding/base64"
	"net/http"
	"strconv"
)

// Page is Azure's list envelope.
type Page[T any] struct {
	Value    []T    `json:"value"`
	NextLink string `json:"nextLink,omitempty"`
}

// NextLink builds an absolute nextLink: the public base URL plus the
// request's path and query with $skiptoken set to token. base has no
// trailing '/'. An empty token yields "".
func NextLink(base string, r *http.Request, token string) string {
	if token == "" {
		return ""
	}
	q := r.URL.Query()
	q.Set("$skiptoken", token)
	return base + r.URL.EscapedPath() + "?" + q.Encode()
}

// PageSize reads a page-size parameter (Key Vault's maxresults, ARM's $top),
// clamped to [1, max]; absent means def.
func PageSize(r *http.Request, param string, def, max int) (int, error) {
	s := r.URL.Query().Get(param)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, Errorf(http.StatusBadRequest, CodeBadParameter, "%s must be an integer between 1 and %d.", param, max)
	}
	return n, nil
}

// EncodeSkipToken makes an opaque $skiptoken from the last key of a page.
func EncodeSkipToken(lastKey string) string {
	if lastKey == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(lastKey))
}

// SkipToken decodes the request's $skiptoken into the key to list after.
func SkipToken(r *http.Request) (string, error) {
	v := r.URL.Query().Get("$skiptoken")
	if v == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return "", Errorf(http.StatusBadRequest, CodeBadParameter, "The $skiptoken is malformed.")
	}
	return string(b), nil
}
