package azure

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Error is an error that renders as Azure's envelope
// {"error":{"code","message","innererror":{"code"}}} with an HTTP status.
// Message is shown to the client; Err (optional) is the internal cause,
// logged but never sent.
type Error struct {
	Status    int
	Code      string
	Message   string
	InnerCode string // Key Vault's innererror.code (e.g. ForbiddenByRbac)
	Target    string
	Header    http.Header // extra response headers (e.g. WWW-Authenticate)
	Err       error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %s: %v", e.Status, e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithInner sets the innererror code.
func (e *Error) WithInner(code string) *Error { e.InnerCode = code; return e }

// Wrap records the internal cause.
func (e *Error) Wrap(err error) *Error { e.Err = err; return e }

// Common ARM/Key Vault error codes.
const (
	CodeBadRequest            = "BadRequest"
	CodeInvalidRequestContent = "InvalidRequestContent"
	CodeBadParameter          = "BadParameter" // Key Vault's 400
	CodeMissingAPIVersion     = "MissingApiVersionParameter"
	CodeInvalidAPIVersion     = "InvalidApiVersionParameter"
	CodeRequestTooLarge       = "RequestEntityTooLarge"
	CodeResourceNotFound      = "ResourceNotFound"
	CodeResourceGroupNotFound = "ResourceGroupNotFound"
	CodeSubscriptionNotFound  = "SubscriptionNotFound"
	CodeInvalidResourceID     = "InvalidResourceId"
	CodeLocationNotAvailable  = "LocationNotAvailableForResourceType"
	CodeConflict              = "Conflict"
	CodePreconditionFailed    = "PreconditionFailed"
	CodeAuthenticationFailed  = "AuthenticationFailed"
	CodeInvalidAuthToken      = "InvalidAuthenticationToken"
	CodeAuthorizationFailed   = "AuthorizationFailed"
	CodeForbidden             = "Forbidden"
	CodeUnauthorized          = "Unauthorized"
	CodeMethodNotAllowed      = "MethodNotAllowed"
	CodeNotFound              = "NotFound"
	CodeInternal              = "InternalError"
)

type envelope struct {
	Error body `json:"error"`
}

type body struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	Target     string `json:"target,omitempty"`
	InnerError *inner `json:"innererror,omitempty"`
}

type inner struct {
	Code string `json:"code"`
}

// AsError returns err's *Error, or a 500 InternalError that names the
// request id and hides the cause.
func AsError(err error, requestID string) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal,
		Message: "The server encountered an internal error. Request id: " + requestID, Err: err}
}

// WriteError renders err as Azure's envelope. Unrecognised errors become a
// 500 whose message carries only the request id.
func WriteError(w http.ResponseWriter, requestID string, err error) *Error {
	e := AsError(err, requestID)
	for k, vs := range e.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	b := body{Code: e.Code, Message: e.Message, Target: e.Target}
	if e.InnerCode != "" {
		b.InnerError = &inner{Code: e.InnerCode}
	}
	w.Header().Set("x-ms-error-code", e.Code)
	WriteJSON(w, e.Status, envelope{Error: b})
	return e
}

// WriteJSON writes v as JSON with Azure's content type.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own response types reach here; a marshal failure is a bug.
		http.Error(w, `{"error":{"code":"InternalError","message":"response encoding failed"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
