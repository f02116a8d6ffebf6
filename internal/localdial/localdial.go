// Package localdial builds the HTTP clients cvault's own tools use (CLI,
// guest agent, demo, tests): they trust cvault's CA and dial 127.0.0.1 for
// every *.localhost host (RFC 6761 says such names are loopback, but this
// machine's resolver does not resolve them), so vault hosts like
// https://kv1.vault.localhost:8443 work without hosts-file entries.
package localdial

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"strings"
	"time"
)

// Transport returns an HTTP transport that trusts roots (nil: system roots)
// and dials loopback for *.localhost.
func Transport(roots *x509.CertPool) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err == nil && IsLocalhost(host) {
				addr = net.JoinHostPort("127.0.0.1", port)
			}
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        100,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
}

// Client returns an *http.Client over Transport(roots).
func Client(roots *x509.CertPool) *http.Client {
	return &http.Client{Transport: Transport(roots), Timeout: 60 * time.Second}
}

// IsLocalhost reports whether host is "localhost" or a name under it.
func IsLocalhost(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}
