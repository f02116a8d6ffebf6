package jobs_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cvault/cvault/internal/jobs"
	"github.com/cvault/cvault/internal/store"
	"github.com/cvault/cvault/internal/store/embedded/embeddedtest"
	"github.com/cvault/cvault/internal/store/postgres"
	"github.com/cvault/cvault/internal/store/postgres/pgtest"
)

type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestLeases(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { testLeases(t, embeddedtest.Open(t)) })
	t.Run("postgres", func(t *testing.T) { testLeases(t, pgtest.Open(t, postgres.Options{})) })
}

func testLeases(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	a, _ := jobs.New(jobs.Config{Store: s, Owner: "server-a", LeaseTTL: 10 * time.Second, Now: c.now})
	b, _ := jobs.New(jobs.Config{Store: s, Owner: "server-b", LeaseTTL: 10 * time.Second, Now: c.now})
	put := func(id string) error {
		return s.Update(ctx, func(tx store.Tx) error {
			_, err := a.Put(ctx, tx, id, "rotation", map[string]string{"des": id}, 3)
			return err
		})
	}
	if err := put("j1"); err != nil {
		t.Fatal(err)
	}
	if err := put("j1"); !errors.Is(err, jobs.ErrActive) {
		t.Fatalf("second Put of an active job: %v", err)
	}
	la, err := a.Acquire(ctx, "rotation")
	if err != nil || la == nil || la.Job().Owner != "server-a" || la.Job().Attempts != 1 {
		t.Fatalf("Acquire = %+v, %v", la, err)
	}
	if lb, err := b.Acquire(ctx, "rotation"); err != nil || lb != nil {
		t.Fatalf("B took a leased job: %+v, %v", lb, err)
	}
	if lb, _ := b.Acquire(ctx, "other-type"); lb != nil {
		t.Fatal("Acquire ignored the type")
	}
	// A records progress and renews; B still cannot take it.
	c.advance(8 * time.Second)
	if err := la.Update(ctx, func(j *jobs.Job) error { j.Done = 1; return nil }); err != nil {
		t.Fatal(err)
	}
	c.advance(8 * time.Second)
	if lb, _ := b.Acquire(ctx, "rotation"); lb != nil {
		t.Fatal("B took a job whose lease was renewed")
	}
	// A dies: its lease expires, B takes over with A's progress.
	c.advance(11 * time.Second)
	lb, err := b.Acquire(ctx, "rotation")
	if err != nil || lb == nil || lb.Job().Done != 1 || lb.Job().Attempts != 2 {
		t.Fatalf("B did not resume the job: %+v, %v", lb, err)
	}
	if err := la.Update(ctx, func(j *jobs.Job) error { j.Done = 2; return nil }); !errors.Is(err, jobs.ErrLeaseLost) {
		t.Fatalf("A's stale update: %v, want ErrLeaseLost", err)
	}
	if err := lb.Update(ctx, func(j *jobs.Job) error { j.Done = 3; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := lb.Finish(ctx, nil); err != nil {
		t.Fatal(err)
	}
	j, err := a.Get(ctx, "j1")
	if err != nil || j.State != jobs.StateSucceeded || j.Done != 3 || j.Owner != "" {
		t.Fatalf("finished job = %+v, %v", j, err)
	}
	// A finished job can be put again (a new rotation of the same set).
	if err := put("j1"); err != nil {
		t.Fatalf("re-Put of a finished job: %v", err)
	}
	l, err := a.AcquireID(ctx, "j1")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(ctx, errors.New("vault unreachable")); err != nil {
		t.Fatal(err)
	}
	if j, _ := a.Get(ctx, "j1"); j.State != jobs.StateFailed || j.Error != "vault unreachable" {
		t.Fatalf("failed job = %+v", j)
	}
}

func TestKeepAliveCancelsWorkWhenTheLeaseIsLost(t *testing.T) {
	s := embeddedtest.Open(t)
	ctx := context.Background()
	a, _ := jobs.New(jobs.Config{Store: s, Owner: "a", LeaseTTL: 30 * time.Millisecond})
	b, _ := jobs.New(jobs.Config{Store: s, Owner: "b", LeaseTTL: 30 * time.Millisecond})
	s.Update(ctx, func(tx store.Tx) error { _, err := a.Put(ctx, tx, "j", "t", nil, 1); return err })
	la, err := a.Acquire(ctx, "t")
	if err != nil || la == nil {
		t.Fatal(err)
	}
	work, stop := la.KeepAlive(ctx)
	defer stop()
	time.Sleep(100 * time.Millisecond) // renewals keep it
	if lb, _ := b.Acquire(ctx, "t"); lb != nil {
		t.Fatal("B took a job that is kept alive")
	}
	// Someone else overwrites the job (as a takeover would): A's renewal fails.

	s.Update(ctx, func(tx store.Tx) error {
		_, err := tx.Put(ctx, jobs.Kind, "j", []byte(`{"id":"j","type":"t","state":"Running","owner":"b","leaseUntil":"2999-01-01T00:00:00Z"}`), store.Any)
		return err
	})
	select {
	case <-work.Done():
		if !errors.Is(context.Cause(work), jobs.ErrLeaseLost) {
			t.Fatalf("cause = %v", context.Cause(work))
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the work context was not cancelled after the lease was lost")
	}
}
