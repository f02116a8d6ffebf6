package azure

import (
	"net/http"
	"time"
)

// Operation status values azcore's pollers understand.
const (
	StatusInProgress = "InProgress"
	StatusSucceeded  = "Succeeded"
	StatusFailed     = "Failed"
	StatusCanceled   = "Canceled"
)

// OperationStatus is the body of an Azure-AsyncOperation URL.
type OperationStatus struct {
	ID              string     `json:"id,omitempty"`
	Name            string     `json:"name"`
	Status          string     `json:"status"`
	StartTime       time.Time  `json:"startTime"`
	EndTime         *time.Time `json:"endTime,omitempty"`
	PercentComplete *float64   `json:"percentComplete,omitempty"`
	Error           *OpError   `json:"error,omitempty"`
	// Properties carries operation-specific progress (e.g. rotation done/total).
	Properties any `json:"properties,omitempty"`
}

// OpError is the error of a failed operation.
type OpError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Terminal reports whether the status ends polling.
func (o OperationStatus) Terminal() bool {
	return o.Status == StatusSucceeded || o.Status == StatusFailed || o.Status == StatusCanceled
}

// SetLROHeaders sets the headers azcore's async poller follows: the
// operation-status URL, a Location for the final GET, and a short
// Retry-After so pollers don't wait their default 30 s.
func SetLROHeaders(w http.ResponseWriter, asyncURL, location string) {
	w.Header().Set("Azure-AsyncOperation", asyncURL)
	if location != "" {
		w.Header().Set("Location", location)
	}
	w.Header().Set("Retry-After", "1")
}
