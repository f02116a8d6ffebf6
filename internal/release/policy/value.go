package policy

import (
	"encoding/json"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// operator is a claim test's comparison.
type operator uint8

const (
	opEquals operator = iota
	opNotEquals
	opLess
	opLessOrEquals
	opGreater
	opGreaterOrEquals
	opExists
)

// operatorNames is in canonical spelling; the index is the operator.
var operatorNames = [...]string{
	opEquals:          "equals",
	opNotEquals:       "notEquals",
	opLess:            "less",
	opLessOrEquals:    "lessOrEquals",
	opGreater:         "greater",
	opGreaterOrEquals: "greaterOrEquals",
	opExists:          "exists",
}

func (o operator) String() string { return operatorNames[o] }

func lookupOperator(name string) (operator, bool) {
	for i, n := range operatorNames {
		if strings.EqualFold(n, name) {
			return operator(i), true
		}
	}
	return 0, false
}

func (o operator) ordering() bool { return o >= opLess && o <= opGreaterOrEquals }

type valueKind uint8

const (
	valueString valueKind = iota
	valueNumber
	valueBool
)

// value is a policy operand: a JSON string, number or boolean.
type value struct {
	kind valueKind
	lit  string // string content, number literal as written, or "true"/"false"
	text string // canonical comparison text (see canonicalText)
	num  string // canonical number for the ordering operators, or ""
}

// canonicalText renders a scalar claim or policy value as the text equality
// compares: strings as they are, booleans as "true"/"false", numbers as
// decimal (integers exactly, however large). This is why a policy's
// "equals":"false" matches a JSON false claim and "equals":"0" matches 0, as
// Azure's production sidecar policies require (wire §3.1).
//
// num is the canonical number the ordering operators compare, or "" when the
// value is neither a number nor a string spelled as a JSON number. ok is
// false for values with no text: objects, arrays, null, non-finite floats and
// malformed json.Number.
func canonicalText(v any) (text, num string, ok bool) {
	switch v := v.(type) {
	case string:
		if isJSONNumber(v) {
			num, _ = numberText(v)
		}
		return v, num, true
	case bool:
		if v {
			return "true", "", true
		}
		return "false", "", true
	case json.Number:
		if !isJSONNumber(string(v)) {
			return "", "", false
		}
		return number(numberText(string(v)))
	case float64:
		return number(floatText(v))
	case float32:
		return number(floatText(float64(v)))
	case int:
		return number(strconv.Itoa(v), true)
	case int64:
		return number(strconv.FormatInt(v, 10), true)
	case int32:
		return number(strconv.FormatInt(int64(v), 10), true)
	case int16:
		return number(strconv.FormatInt(int64(v), 10), true)
	case int8:
		return number(strconv.FormatInt(int64(v), 10), true)
	case uint:
		return number(strconv.FormatUint(uint64(v), 10), true)
	case uint64:
		return number(strconv.FormatUint(v, 10), true)
	case uint32:
		return number(strconv.FormatUint(uint64(v), 10), true)
	case uint16:
		return number(strconv.FormatUint(uint64(v), 10), true)
	case uint8:
		return number(strconv.FormatUint(uint64(v), 10), true)
	}
	return "", "", false
}

func number(text string, ok bool) (string, string, bool) {
	if !ok {
		return "", "", false
	}
	return text, text, true
}

// numberText canonicalizes a valid JSON number literal. Integer literals are
// kept digit for digit (JSON forbids leading zeros, so they are already
// canonical), which keeps large integers such as nonces exact; literals with
// a fraction or exponent go through float64, exactly as a float64 claim does.
func numberText(lit string) (string, bool) {
	if isIntegerLiteral(lit) {
		if lit == "-0" {
			return "0", true
		}
		return lit, true
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil { // out of float64 range: compare as written
		return lit, true
	}
	return floatText(f)
}

// floatText writes integral floats as the exact integer they hold (so 1e20
// and 100000000000000000000 agree, and a float64 claim of 2^64 reads
// 18446744073709551616) and others in shortest form.
func floatText(f float64) (string, bool) {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return "", false
	case f == 0:
		return "0", true
	case f != math.Trunc(f):
		return strconv.FormatFloat(f, 'g', -1, 64), true
	case math.Abs(f) < 1<<53: // shortest form is exact here
		return strconv.FormatFloat(f, 'f', -1, 64), true
	}
	return new(big.Float).SetFloat64(f).Text('f', 0), true
}

func isIntegerLiteral(s string) bool {
	return !strings.ContainsAny(s, ".eE")
}

// isJSONNumber reports whether s is spelled as a JSON number (RFC 8259 §6).
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || !isDigit(s[i]) {
			return false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || !isDigit(s[i]) {
			return false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	return i == len(s)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// compareNumbers orders two canonical number texts. Integers compare exactly
// (sign, then length, then digits); anything else compares as float64.
func compareNumbers(a, b string) (int, bool) {
	if isIntegerLiteral(a) && isIntegerLiteral(b) {
		return compareIntegers(a, b), true
	}
	x, err := strconv.ParseFloat(a, 64)
	if err != nil {
		return 0, false
	}
	y, err := strconv.ParseFloat(b, 64)
	if err != nil {
		return 0, false
	}
	switch {
	case x < y:
		return -1, true
	case x > y:
		return 1, true
	}
	return 0, true
}

func compareIntegers(a, b string) int {
	na, nb := strings.HasPrefix(a, "-"), strings.HasPrefix(b, "-")
	switch {
	case na && !nb:
		return -1
	case !na && nb:
		return 1
	case na && nb:
		return -compareMagnitudes(a[1:], b[1:])
	}
	return compareMagnitudes(a, b)
}

func compareMagnitudes(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}
