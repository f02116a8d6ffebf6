package main

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/cvault/cvault/internal/loadgen"
	"github.com/cvault/cvault/internal/localdial"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test a running cvault server",
		Long: `Load-test a running cvault server with keep-alive HTTPS workers and report
requests per second and p50/p99 latency. BENCHMARKS.md records each result with the
command that produced it.`,
	}
	cmd.AddCommand(newBenchHTTPCmd())
	return cmd
}

func newBenchHTTPCmd() *cobra.Command {
	var (
		url, caFile, token string
		conc               []int
		dur                time.Duration
		want               int
	)
	cmd := &cobra.Command{
		Use:   "http",
		Short: "GET one URL with N workers (the /healthz floor by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := benchClient(caFile)
			if err != nil {
				return err
			}
			h := http.Header{}
			if token != "" {
				h.Set("Authorization", "Bearer "+token)
			}
			for _, c := range conc {
				res, err := loadgen.Run(cmd.Context(), loadgen.Options{Concurrency: c, Duration: dur, Do: loadgen.Get(client, url, h, want)})
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "GET %s c=%d: %s\n", url, c, res)
				if res.FirstErr != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "  first error: %v\n", res.FirstErr)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&url, "url", "https://localhost:8443/healthz", "URL to GET")
	f.StringVar(&caFile, "ca", "", "CA certificate to trust (default: SSL_CERT_FILE or ./cvault-data/ca.pem)")
	f.StringVar(&token, "token", "", "bearer token to send (env CVAULT_TOKEN)")
	f.IntSliceVarP(&conc, "concurrency", "c", []int{1, 8, 32}, "worker counts to run, one after another")
	f.DurationVarP(&dur, "duration", "d", 5*time.Second, "duration of each run")
	f.IntVar(&want, "status", 200, "expected status code")
	return cmd
}

// benchClient trusts caFile, SSL_CERT_FILE, or the default data dir's CA.
func benchClient(caFile string) (*http.Client, error) {
	if caFile == "" {
		caFile = os.Getenv("SSL_CERT_FILE")
	}
	if caFile == "" {
		caFile = "cvault-data/ca.pem"
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA: %w (pass --ca)", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA: no certificate in %s", caFile)
	}
	return localdial.Client(pool), nil
}
