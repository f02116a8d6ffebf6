package main

import (
	"bufio"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/cvault/cvault/internal/app"
	"github.com/cvault/cvault/internal/localdial"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// cvaultBinary builds the real binary once per test run.
func cvaultBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cvault-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "cvault")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// process is a running `cvault serve`.
type process struct {
	cmd  *exec.Cmd
	base string
}

func startServe(t *testing.T, bin, dataDir, listen string, env []string, extra ...string) *process {
	t.Helper()
	args := append([]string{"serve", "--data", dataDir, "--listen", listen, "--log-level", "warn"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// The first line names the base URL once the store is open and the port bound.
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("serve printed nothing: %v", err)
	}
	go io.Copy(io.Discard, stdout)
	f := strings.Fields(line)
	if len(f) < 4 || f[2] != "serving" {
		t.Fatalf("unexpected first line %q", line)
	}
	return &process{cmd: cmd, base: f[3]}
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// adminClient returns a client trusting the data dir's CA and an ARM token
// for the bootstrap admin, obtained from the token endpoint as any client would.
func adminClient(t *testing.T, dataDir, base string) (*http.Client, string, string) {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dataDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := localdial.Client(pool)
	creds, err := app.ReadAdminFile(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {creds.ClientID},
		"client_secret": {creds.ClientSecret}, "scope": {base + "/.default"}}
	res, err := client.PostForm(base+"/"+creds.TenantID+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(res.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %d %v", res.StatusCode, err)
	}
	req, _ := http.NewRequest("GET", base+"/subscriptions?api-version=2022-12-01", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	res, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var subs struct {
		Value []struct{ SubscriptionID string }
	}
	if err := json.NewDecoder(res.Body).Decode(&subs); err != nil || len(subs.Value) == 0 {
		t.Fatalf("subscriptions: %d %v", res.StatusCode, err)
	}
	return client, tok.AccessToken, subs.Value[0].SubscriptionID
}

func putGroup(client *http.Client, base, token, sub string, i int) (int, error) {
	body := fmt.Sprintf(`{"location":"eastus","tags":{"n":"%d","check":"%s"}}`, i, checksum(i))
	req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/subscriptions/%s/resourceGroups/crash-%04d?api-version=2021-04-01", base, sub, i), strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, nil
}

func checksum(i int) string { return fmt.Sprintf("%08x", uint32(i)*2654435761) }

// TestCrashLosesNoAcknowledgedWrite sends 1,000 writes, SIGKILLs the server
// after a random N-th acknowledged one, restarts it on the same store, and
// finds all N writes readable and every record whole (issue 2), on both stores.
func TestCrashLosesNoAcknowledgedWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := cvaultBinary(t)
	t.Run("embedded", func(t *testing.T) { crashAndCheck(t, bin, nil) })
	t.Run("postgres", func(t *testing.T) { env, _, _ := pgServeEnv(t); crashAndCheck(t, bin, env) })
}

func crashAndCheck(t *testing.T, bin string, env []string) {
	dataDir := t.TempDir()
	addr := freePort(t)
	p := startServe(t, bin, dataDir, addr, env)
	client, token, sub := adminClient(t, dataDir, p.base)
	nBig, _ := rand.Int(rand.Reader, big.NewInt(900))
	n := int(nBig.Int64()) + 50 // kill after the n-th acknowledged write, 50 ≤ n < 950
	// Writers keep going concurrently so the kill lands mid-request.
	acked := make([]bool, 1000)
	var mu sync.Mutex
	count := 0
	var wg sync.WaitGroup
	killed := make(chan struct{})
	next := make(chan int, 1000)
	for i := range 1000 {
		next <- i
	}
	close(next)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				select {
				case <-killed:
					return
				default:
				}
				status, err := putGroup(client, p.base, token, sub, i)
				if err != nil || status != http.StatusCreated {
					continue
				}
				mu.Lock()
				acked[i] = true
				count++
				if count == n {
					_ = p.cmd.Process.Signal(syscall.SIGKILL)
					close(killed)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	_ = p.cmd.Wait()
	if count < n {
		t.Fatalf("only %d writes were acknowledged before the kill point %d", count, n)
	}

	p2 := startServe(t, bin, dataDir, addr, env)
	if p2.base != p.base {
		t.Fatalf("base URL changed across restart: %s → %s", p.base, p2.base)
	}
	client, token, _ = adminClient(t, dataDir, p2.base)
	found := 0
	for i := range 1000 {
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s/subscriptions/%s/resourceGroups/crash-%04d?api-version=2021-04-01", p2.base, sub, i), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var g struct {
			Name string
			Tags map[string]string
		}
		json.NewDecoder(res.Body).Decode(&g)
		res.Body.Close()
		switch {
		case res.StatusCode == http.StatusOK:
			found++
			if g.Tags["n"] != fmt.Sprint(i) || g.Tags["check"] != checksum(i) {
				t.Errorf("crash-%04d is half-written: %+v", i, g)
			}
		case acked[i]:
			t.Errorf("acknowledged write crash-%04d lost (%d)", i, res.StatusCode)
		case res.StatusCode != http.StatusNotFound:
			t.Errorf("crash-%04d: status %d", i, res.StatusCode)
		}
	}
	t.Logf("killed after %d acknowledged writes (%d acknowledged in all); %d records after restart", n, count, found)
}

// TestDemoBinary runs `cvault demo` from the built binary, as a newcomer
// does: outside `go test`, libraries behave differently (azcore, for one,
// refuses sub-second polling only outside tests), so the demos' own tests
// are not enough.
func TestDemoBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	cmd := exec.Command(cvaultBinary(t), "demo")
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cvault demo: %v\n%s", err, out)
	}
	for _, scenario := range []string{"skr", "cross-tenant", "cvm-disk", "rotate"} {
		if !strings.Contains(string(out), "== "+scenario+": all ") {
			t.Errorf("scenario %s did not report success:\n%s", scenario, out)
		}
	}
}
