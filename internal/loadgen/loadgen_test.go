package loadgen

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRunCountsRequestsAndErrors(t *testing.T) {
	var n int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	res, err := Run(t.Context(), Options{Concurrency: 4, Requests: 200, Do: Get(srv.Client(), srv.URL, nil, http.StatusOK)})
	if err != nil || res.Requests != 200 || res.Errors != 0 || res.P99 < res.P50 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	boom := errors.New("boom")
	res, _ = Run(t.Context(), Options{Concurrency: 2, Requests: 10, Do: func(context.Context, int) error { n++; return boom }})
	if res.Errors != 10 || !errors.Is(res.FirstErr, boom) || res.RPS() != 0 {
		t.Fatalf("errors not counted: %+v", res)
	}
	if _, err := Run(t.Context(), Options{}); err == nil {
		t.Fatal("empty options accepted")
	}
}
