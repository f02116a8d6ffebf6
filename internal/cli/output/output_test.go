package output_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/cvault/cvault/internal/cli/output"
)

func decode(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestWrite(t *testing.T) {
	list := decode(t, `{"value":[{"name":"a","properties":{"aud":["x","y"]}},{"name":"b\tc","properties":{}}]}`)
	cols := []output.Column{{Header: "NAME", Path: "name"}, {Header: "AUD", Path: "properties.aud"}, {Header: "MISSING", Path: "no.such"}}
	for _, tc := range []struct {
		format string
		v      any
		want   []string
	}{
		{output.Table, list, []string{"NAME", "AUD", "a", "x,y", "b c"}},
		{output.JSON, list, []string{`"name": "a"`, "[\n"}},
		{output.Table, decode(t, `{"name":"one"}`), []string{"NAME", "one"}},
	} {
		var b bytes.Buffer
		if err := output.Write(&b, tc.format, tc.v, cols); err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s output lacks %q:\n%s", tc.format, w, b.String())
			}
		}
	}
	if lines := strings.Count(func() string { var b bytes.Buffer; _ = output.Write(&b, output.Table, list, cols); return b.String() }(), "\n"); lines != 3 {
		t.Errorf("table has %d lines, want header + 2 rows", lines)
	}
	if err := output.Write(&bytes.Buffer{}, "yaml", list, cols); !errors.Is(err, output.ErrFormat) {
		t.Errorf("yaml: err = %v", err)
	}
}
