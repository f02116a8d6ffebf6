package app_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cvault/cvault/internal/cvaulttest"
	"github.com/cvault/cvault/internal/localdial"
)

// BenchmarkHealthz is the HTTP floor every service is measured against:
// cvault's /healthz over TLS with keep-alive, next to a trivial Go TLS
// server returning 32 bytes, in the same run.
// go test -run '^$' -bench Healthz -benchtime 3s ./internal/app/
func BenchmarkHealthz(b *testing.B) {
	raw := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("0123456789abcdef0123456789abcdef"))
	}))
	raw.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
	raw.StartTLS()
	defer raw.Close()
	srv := cvaulttest.Start(b)
	for _, tc := range []struct {
		name   string
		client *http.Client
		url    string
	}{
		{"raw-go-tls", raw.Client(), raw.URL + "/"},
		{"cvault", localdial.Client(srv.CAPool), srv.URL + "/healthz"},
	} {
		for _, par := range []int{1, 4} {
			b.Run(tc.name+"/c="+itoa(par*2), func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(par)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						res, err := tc.client.Get(tc.url)
						if err != nil {
							b.Error(err)
							return
						}
						io.Copy(io.Discard, res.Body)
						res.Body.Close()
					}
				})
			})
		}
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
