package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cvault/cvault/internal/cli/client"
	"github.com/cvault/cvault/internal/guest/imdsproxy"
	"github.com/cvault/cvault/internal/localdial"
)

func newIMDSProxyCmd() *cobra.Command {
	var listen, server, secretFile, caFile, logLevel string
	cmd := &cobra.Command{
		Use:   "imds-proxy --server URL --secret-file FILE",
		Short: "Answer IMDS managed-identity token requests locally, forwarding them to cvault",
		Long: `Serve Azure IMDS's managed-identity token endpoint (GET /metadata/identity/oauth2/token with
header 'Metadata: true') on a local address and forward each request to cvault's
managed-identity endpoint, adding the VM's or identity's secret (X-IDENTITY-HEADER). Code
that speaks IMDS (azidentity's ManagedIdentityCredential, MSAL, curl) then gets cvault tokens.

The secret is read from --secret-file on every request (so a rotated secret takes effect
at once), must be readable by its owner only (0600), and is never logged. Write it with
'cvault identity secret NAME -g RG --secret-file FILE'.

Requests without 'Metadata: true' or with X-Forwarded-For are refused with 400, as IMDS
refuses them. MSAL and azidentity hard-code http://169.254.169.254: to serve them unchanged,
add the address to the loopback interface (ip addr add 169.254.169.254/32 dev lo) and run
as root with --listen 169.254.169.254:80. Otherwise give clients the local address.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(logLevel, false)
			if err != nil {
				return err
			}
			if server == "" || secretFile == "" {
				return errors.New("--server and --secret-file are required")
			}
			secret := imdsproxy.FileSecret(secretFile)
			if _, err := secret(); err != nil { // fail at start, not on the first request
				return err
			}
			var pool *x509.CertPool
			if caFile != "" || os.Getenv("SSL_CERT_FILE") != "" {
				if pool, err = client.LoadCA(caFile, ""); err != nil {
					return err
				}
			}
			p, err := imdsproxy.New(imdsproxy.Config{Server: server, Secret: secret, Client: localdial.Client(pool), Logger: logger})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen: %w", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintf(cmd.OutOrStdout(), "imds-proxy listening on http://%s%s, forwarding to %s\n", ln.Addr(), imdsproxy.TokenPath, server)
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
			}
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8079", "address to listen on (169.254.169.254:80 when configured and run as root)")
	f.StringVar(&server, "server", "", "cvault base URL, e.g. https://cvault.example:8443")
	f.StringVar(&secretFile, "secret-file", "", "file (0600) holding the managed-identity secret")
	f.StringVar(&caFile, "ca", "", "CA certificate to trust (default: $SSL_CERT_FILE, else the system roots)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}
