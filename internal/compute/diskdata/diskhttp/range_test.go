package diskhttp

import (
	"fmt"
	"testing"
)

// FuzzParseRange: never panics; a success is a well-formed range that
// prints back to an equivalent header.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-511", "bytes=512-", "bytes=-5", "bytes=5-1", "bytes=a-b", "items=0-1", " bytes=0-0 ", "bytes=9223372036854775807-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		off, end, ok := parseRange(s)
		if !ok {
			return
		}
		if off < 0 || (end != -1 && end < off) {
			t.Fatalf("%q → %d-%d", s, off, end)
		}
		again := fmt.Sprintf("bytes=%d-", off)
		if end >= 0 {
			again += fmt.Sprint(end)
		}
		if o2, e2, ok := parseRange(again); !ok || o2 != off || e2 != end {
			t.Fatalf("%q does not round-trip via %q", s, again)
		}
	})
}
