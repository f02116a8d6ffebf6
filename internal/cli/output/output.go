// Package output renders the admin CLI's answers (design §1: `--output
// table|json`): JSON exactly as the server sent it, or a table of chosen
// fields addressed by dotted paths into the JSON.
package output

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Formats.
const (
	Table = "table"
	JSON  = "json"
)

// ErrFormat reports an unknown --output value.
var ErrFormat = errors.New("unknown output format (want table or json)")

// Column is a table column: a header and a dotted path into the JSON
// object ("properties.principalId").
type Column struct {
	Header, Path string
}

// Check validates a --output value.
func Check(format string) error {
	if format != Table && format != JSON {
		return fmt.Errorf("--output %q: %w", format, ErrFormat)
	}
	return nil
}

// Write renders v (a decoded JSON object or array; an ARM/Graph list
// envelope {"value":[…]} is unwrapped) as JSON or as a table.
func Write(w io.Writer, format string, v any, cols []Column) error {
	if err := Check(format); err != nil {
		return err
	}
	if m, ok := v.(map[string]any); ok {
		if list, ok := m["value"].([]any); ok {
			v = list
		}
	}
	if format == JSON {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	rows, ok := v.([]any)
	if !ok {
		rows = []any{v}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	hs := make([]string, len(cols))
	for i, c := range cols {
		hs[i] = c.Header
	}
	fmt.Fprintln(tw, strings.Join(hs, "\t"))
	for _, r := range rows {
		cells := make([]string, len(cols))
		for i, c := range cols {
			cells[i] = Format(Lookup(r, c.Path))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// Lookup follows a dotted path through nested objects; nil if absent.
func Lookup(v any, path string) any {
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// Format renders a JSON value for a table cell; tabs and newlines in
// values are flattened so a value cannot break the table.
func Format(v any) string {
	var s string
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		s = x
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = Format(e)
		}
		s = strings.Join(parts, ",")
	case map[string]any:
		b, _ := json.Marshal(x)
		s = string(b)
	default:
		s = fmt.Sprint(x)
	}
	return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
}
