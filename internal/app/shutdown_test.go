package app_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/cvault/cvault/internal/app"
	"github.com/cvault/cvault/internal/cvaulttest"
	"github.com/cvault/cvault/internal/localdial"
)

// slowBody delivers a request body in two halves with a pause between,
// during which the server is told to stop.
type slowBody struct {
	parts [][]byte
	pause chan struct{}
}

func (b *slowBody) Read(p []byte) (int, error) {
	if len(b.parts) == 0 {
		return 0, io.EOF
	}
	if len(b.parts) == 1 {
		<-b.pause
	}
	n := copy(p, b.parts[0])
	b.parts = b.parts[1:]
	return n, nil
}

// TestGracefulShutdownFinishesInFlight: a request in flight when the
// server is told to stop still completes, and the store stays consistent.
func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	a, err := app.New(ctx, app.Config{DataDir: t.TempDir(), Listener: ln, URL: "https://localhost:" + port, Logger: cvaulttest.TestLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx) }()

	client := localdial.Client(a.CA.Pool())
	tok := token(t, client, a)
	body := &slowBody{parts: [][]byte{[]byte(`{"location":`), []byte(`"eastus"}`)}, pause: make(chan struct{})}
	req, _ := http.NewRequest("PUT", a.BaseURL.String()+"/subscriptions/"+a.Bootstrap.SubscriptionID+"/resourceGroups/inflight?api-version=2021-04-01", body)
	req.Header.Set("Authorization", "Bearer "+tok)
	done := make(chan int, 1)
	go func() {
		res, err := client.Do(req)
		if err != nil {
			t.Error(err)
			done <- 0
			return
		}
		res.Body.Close()
		done <- res.StatusCode
	}()
	time.Sleep(100 * time.Millisecond) // the request is now inside the handler, reading its body
	stop()
	time.Sleep(100 * time.Millisecond) // shutdown has begun and waits for the request
	close(body.pause)
	if got := <-done; got != http.StatusCreated {
		t.Fatalf("in-flight request = %d, want 201", got)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := a.ARM.ResourceGroup(t.Context(), a.Bootstrap.SubscriptionID, "inflight"); err != nil {
		t.Fatalf("the in-flight write is missing: %v", err)
	}
}

func token(t *testing.T, client *http.Client, a *app.App) string {
	t.Helper()
	creds, err := app.ReadAdminFile(a.Config.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := client.PostForm(a.BaseURL.String()+"/"+creds.TenantID+"/oauth2/v2.0/token", map[string][]string{
		"grant_type": {"client_credentials"}, "client_id": {creds.ClientID}, "client_secret": {creds.ClientSecret},
		"scope": {a.BaseURL.String() + "/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := jsonDecode(res.Body, &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %d %v", res.StatusCode, err)
	}
	return tok.AccessToken
}
