package azure

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// APIVersions is the set of api-version values a service accepts.
type APIVersions struct {
	list     []string // exact values, in the order shown in errors
	dateFrom string   // also accept any YYYY-MM-DD[-preview] >= dateFrom ("" = none)
}

// Versions accepts exactly the given values.
func Versions(v ...string) APIVersions { return APIVersions{list: v} }

// AndDatesFrom also accepts every date version (optionally "-preview")
// on or after from — Key Vault's SDKs moved from 7.x to dated versions.
func (a APIVersions) AndDatesFrom(from string) APIVersions { a.dateFrom = from; return a }

var dateVersion = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2})(-preview(\.\d+)?)?$`)

// Accepts reports whether v is supported.
func (a APIVersions) Accepts(v string) bool {
	if slices.Contains(a.list, v) {
		return true
	}
	if a.dateFrom != "" {
		if m := dateVersion.FindStringSubmatch(v); m != nil && m[1] >= a.dateFrom {
			return true
		}
	}
	return false
}

// Empty reports whether the set accepts nothing (the route needs no api-version).
func (a APIVersions) Empty() bool { return len(a.list) == 0 && a.dateFrom == "" }

func (a APIVersions) String() string {
	s := strings.Join(a.list, ", ")
	if a.dateFrom != "" {
		if s != "" {
			s += ", "
		}
		s += "and dated versions from " + a.dateFrom
	}
	return s
}

// CheckAPIVersion validates r's api-version query parameter.
func CheckAPIVersion(r *http.Request, a APIVersions) error {
	v := apiVersion(r.URL.RawQuery)
	if v == "" {
		return Errorf(http.StatusBadRequest, CodeMissingAPIVersion,
			"The api-version query parameter (?api-version=) is required for all requests.")
	}
	if !a.Accepts(v) {
		return Errorf(http.StatusBadRequest, CodeInvalidAPIVersion,
			"The api-version '%s' is invalid. The supported versions are '%s'.", v, a)
	}
	return nil
}

// apiVersion is r.URL.Query().Get("api-version") without building the
// map on every request: a query without escapes ('%', '+') or ';' (which
// url.ParseQuery refuses) reads the same split on '&'; any other goes
// through url.ParseQuery.
func apiVersion(raw string) string {
	if strings.ContainsAny(raw, "%+;") {
		q, _ := url.ParseQuery(raw)
		return q.Get("api-version")
	}
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		if k, v, _ := strings.Cut(part, "="); k == "api-version" {
			return v
		}
	}
	return ""
}
