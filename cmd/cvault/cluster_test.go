package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cvault/cvault/internal/compute"
	"github.com/cvault/cvault/internal/jobs"
	"github.com/cvault/cvault/internal/store/postgres"
	"github.com/cvault/cvault/internal/store/postgres/pgtest"
)

// loadBalancer is a layer-4 (TCP) load balancer on loopback, as a cluster
// of cvault servers sits behind one public URL: each new connection goes
// to the next backend that accepts it, so a dead backend is skipped.
type loadBalancer struct {
	ln net.Listener

	mu       sync.Mutex
	backends []string
	next     int
}

func startLoadBalancer(t *testing.T, addr string) *loadBalancer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	lb := &loadBalancer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go lb.serve(c)
		}
	}()
	return lb
}

func (lb *loadBalancer) add(backend string) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	lb.backends = append(lb.backends, backend)
}

func (lb *loadBalancer) serve(c net.Conn) {
	defer c.Close()
	lb.mu.Lock()
	order := make([]string, 0, len(lb.backends))
	for i := range lb.backends {
		order = append(order, lb.backends[(lb.next+i)%len(lb.backends)])
	}
	lb.next++
	lb.mu.Unlock()
	for _, b := range order {
		up, err := net.DialTimeout("tcp", b, time.Second)
		if err != nil {
			continue // dead backend: try the next
		}
		defer up.Close()
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
		go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
		<-done // either side ended (a killed backend resets): end both
		return
	}
}

// pgServeEnv gives `cvault serve` a fresh PostgreSQL schema and a root key;
// it returns the environment and the store URL with its search_path.
func pgServeEnv(t *testing.T) ([]string, string, string) {
	t.Helper()
	url := pgtest.URL(t)
	schema := pgtest.NewSchema(t, url)
	key := make([]byte, 32)
	rand.Read(key)
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return []string{"CVAULT_ROOT_KEY=" + hex.EncodeToString(key), "CVAULT_STORE=" + url + sep + "search_path=" + schema}, url, schema
}

// TestRotationTakeoverAcrossServers runs two `cvault serve` processes on
// one PostgreSQL behind one URL (a TCP load balancer), starts a rotation,
// SIGKILLs the server holding its lease mid-way, and finds that the other
// server took the job over once the lease expired and completed it: every
// disk on the new key, every disk's content unchanged (issue 9).
func TestRotationTakeoverAcrossServers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := cvaultBinary(t)
	ctx := t.Context()
	env, pgURL, schema := pgServeEnv(t)
	// Each disk's re-wrap sleeps first (test-only), so the rotation of n
	// disks at 16 at a time lasts long enough to be killed mid-way.
	env = append(env, delayEnv+"=300ms")

	lbAddr := freePort(t)
	base := "https://localhost:" + lbAddr[strings.LastIndex(lbAddr, ":")+1:]
	lb := startLoadBalancer(t, lbAddr)
	// Each server has its own data dir (TLS files, CA copy); the disks'
	// encrypted blocks live on a volume both mount, as they would in a
	// deployment.
	dirA, dirB := t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(dirA, "disks"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dirA, "disks"), filepath.Join(dirB, "disks")); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--url", base, "--job-lease", "2s"}
	procs := map[int]*process{}
	var addrs []string
	for _, dir := range []string{dirA, dirB} {
		addr := freePort(t)
		p := startServe(t, bin, dir, addr, env, flags...)
		if p.base != base {
			t.Fatalf("server serves %s, want %s", p.base, base)
		}
		procs[p.cmd.Process.Pid] = p
		addrs = append(addrs, addr)
	}
	// The setup talks to A only: a role assigned through one server reaches
	// the other's authorization cache a moment later (Azure's "propagation
	// time" too), and the demo's steps follow each other at once.
	lb.add(addrs[0])

	_, _, sub := adminClient(t, dirA, base)
	e := remoteEnv(t, dirA, base, sub)
	x, c, des := crossTenantDES(ctx, t, e)
	rg := x.ProviderRG
	const n = 64
	hashes := makeDisks(t, e, c, rg, x.Location, *des.ID, n)

	// The test reads the job record straight from the shared database.
	db, err := postgres.Open(ctx, pgURL, postgres.Options{Schema: schema, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	job := func() jobs.Job {
		t.Helper()
		recs, err := db.List(ctx, jobs.Kind, "", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			var j jobs.Job
			if err := json.Unmarshal(rec.Value, &j); err != nil {
				t.Fatal(err)
			}
			if j.Type == compute.JobTypeRotation {
				return j
			}
		}
		return jobs.Job{}
	}
	ownerPid := func(j jobs.Job) int {
		f := strings.Split(j.Owner, "/") // host/pid/random
		if len(f) != 3 {
			return 0
		}
		pid, _ := strconv.Atoi(f[1])
		return pid
	}

	// From now on both servers serve the URL.
	lb.add(addrs[1])
	time.Sleep(time.Second) // B's authorization cache catches up (refreshed every 250 ms)
	kc, err := x.KeyClient()
	if err != nil {
		t.Fatal(err)
	}
	nk, err := kc.CreateKey(ctx, x.KeyName, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr(int32(2048))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kid := string(*nk.Key.KID)
	if _, err := rotate(ctx, c, rg, kid); err != nil {
		t.Fatal(err)
	}

	// Kill the lease holder once it has moved some disks, not all.
	deadline := time.Now().Add(20 * time.Second)
	var victim *process
	for victim == nil {
		j := job()
		if j.State == jobs.StateRunning && j.Done > 0 {
			if j.Done >= n {
				t.Fatalf("the rotation reached %d of %d disks before the kill; slow it down", j.Done, n)
			}
			if victim = procs[ownerPid(j)]; victim == nil {
				t.Fatalf("job owner %q is neither server", j.Owner)
			}
			if err := victim.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = victim.cmd.Wait()
			t.Logf("killed %s after %d of %d disks", j.Owner, j.Done, n)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotation did not start: %+v", j)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The survivor takes the job over after the lease expires and ends it.
	var final jobs.Job
	for {
		final = job()
		if !final.Active() {
			break
		}
		if pid := ownerPid(final); pid != 0 && procs[pid] == victim && time.Now().After(final.LeaseUntil.Add(5*time.Second)) {
			t.Fatalf("nobody took over the dead server's lease: %+v", final)
		}
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("the rotation did not finish: %+v", final)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if final.State != jobs.StateSucceeded || final.Attempts < 2 {
		t.Fatalf("job ended %s after %d leases (%s), want Succeeded after a takeover", final.State, final.Attempts, final.Error)
	}
	var state struct {
		Properties struct {
			ActiveKey   compute.KeyForDES    `json:"activeKey"`
			KeyRotation *compute.KeyRotation `json:"keyRotation"`
		} `json:"properties"`
	}
	if err := e.ARM(ctx, x.Provider.Cred, "GET", *des.ID+"?api-version=2023-04-02", nil, &state); err != nil {
		t.Fatal(err)
	}
	kr := state.Properties.KeyRotation
	if kr == nil || kr.State != compute.RotationSucceeded || state.Properties.ActiveKey.KeyURL != kid || kr.DisksRotated != n || kr.DisksTotal != n {
		t.Fatalf("after takeover: active %s, rotation %+v", state.Properties.ActiveKey.KeyURL, kr)
	}
	if err := checkDisks(ctx, e, c, rg, hashes); err != nil {
		t.Fatalf("reading the disks back through the survivor: %v", err)
	}
}
