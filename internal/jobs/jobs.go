// Package jobs runs long work — rotating a disk encryption set's key over
// thousands of disks (seed 004) — as records in the store that one server
// at a time leases. A lease expires unless its holder renews it, so when a
// server dies mid-job another picks the job up and continues from the
// progress the job recorded. Jobs are the unit of crash safety across a
// cluster sharing one PostgreSQL database, and of restart safety on one.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cvault/cvault/internal/store"
)

// Kind is the store kind of job records.
const Kind = "job"

// Job states.
const (
	StatePending   = "Pending"
	StateRunning   = "Running"
	StateSucceeded = "Succeeded"
	StateFailed    = "Failed"
)

var (
	// ErrLeaseLost: another server took the job (this one's lease expired).
	ErrLeaseLost = errors.New("jobs: lease lost")
	// ErrNotFound: no such job.
	ErrNotFound = errors.New("jobs: not found")
	// ErrActive: a job with that id is still pending or running.
	ErrActive = errors.New("jobs: a job with that id is still active")
)

// Job is a job record.
type Job struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"` // what runs it, e.g. "des-rotation"
	State      string          `json:"state"`
	Owner      string          `json:"owner,omitempty"`
	LeaseUntil time.Time       `json:"leaseUntil,omitzero"`
	Attempts   int             `json:"attempts"`
	Done       int             `json:"done"`
	Total      int             `json:"total"`
	Error      string          `json:"error,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"` // the job's own parameters and progress
	Created    time.Time       `json:"created"`
	Updated    time.Time       `json:"updated"`
	version    int64
}

// Active reports whether the job still has work to do.
func (j Job) Active() bool { return j.State == StatePending || j.State == StateRunning }

// Config configures a Queue.
type Config struct {
	Store store.Store
	// Owner names this server in leases (unique per process).
	Owner string
	// LeaseTTL is how long a lease lasts without renewal (default 15 s).
	LeaseTTL time.Duration
	Now      func() time.Time
}

// Queue creates, leases and records jobs.
type Queue struct {
	store store.Store
	owner string
	ttl   time.Duration
	now   func() time.Time
}

// New returns a Queue.
func New(cfg Config) (*Queue, error) {
	if cfg.Store == nil || cfg.Owner == "" {
		return nil, errors.New("jobs: Store and Owner are required")
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 15 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Queue{store: cfg.Store, owner: cfg.Owner, ttl: cfg.LeaseTTL, now: cfg.Now}, nil
}

// LeaseTTL is the lease duration.
func (q *Queue) LeaseTTL() time.Duration { return q.ttl }

// Put writes a new pending job inside tx (so it is created atomically with
// whatever it is about). A finished job with the same id is replaced; an
// active one is ErrActive.
func (q *Queue) Put(ctx context.Context, tx store.Tx, id, typ string, data any, total int) (Job, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return Job{}, fmt.Errorf("jobs: %w", err)
	}
	version := store.Absent
	if rec, err := tx.Get(ctx, Kind, id); err == nil {
		old, err := decode(rec)
		if err != nil {
			return Job{}, err
		}
		if old.Active() {
			return old, ErrActive
		}
		version = rec.Version
	} else if !errors.Is(err, store.ErrNotFound) {
		return Job{}, fmt.Errorf("jobs: %w", err)
	}
	now := q.now().UTC()
	j := Job{ID: id, Type: typ, State: StatePending, Total: total, Data: raw, Created: now, Updated: now}
	if err := put(ctx, tx, &j, version); err != nil {
		return Job{}, err
	}
	return j, nil
}

// Get reads a job.
func (q *Queue) Get(ctx context.Context, id string) (Job, error) {
	rec, err := q.store.Get(ctx, Kind, id)
	if errors.Is(err, store.ErrNotFound) {
		return Job{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Job{}, fmt.Errorf("jobs: %w", err)
	}
	return decode(rec)
}

// Acquire leases the first job of type typ that is pending, or running under
// an expired lease (its server died). It returns nil when none is available.
func (q *Queue) Acquire(ctx context.Context, typ string) (*Lease, error) {
	recs, err := q.store.List(ctx, Kind, "", "", 0)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	now := q.now().UTC()
	for _, rec := range recs {
		j, err := decode(rec)
		if err != nil {
			return nil, err
		}
		if j.Type != typ || !j.Active() || (j.State == StateRunning && now.Before(j.LeaseUntil)) {
			continue
		}
		if l, err := q.take(ctx, j); err == nil {
			return l, nil
		} else if !errors.Is(err, ErrLeaseLost) {
			return nil, err
		}
	}
	return nil, nil
}

// AcquireID leases one job by id, if it is available.
func (q *Queue) AcquireID(ctx context.Context, id string) (*Lease, error) {
	j, err := q.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if !j.Active() || (j.State == StateRunning && q.now().Before(j.LeaseUntil) && j.Owner != q.owner) {
		return nil, ErrLeaseLost
	}
	return q.take(ctx, j)
}

func (q *Queue) take(ctx context.Context, j Job) (*Lease, error) {
	j.State, j.Owner, j.Attempts = StateRunning, q.owner, j.Attempts+1
	j.LeaseUntil = q.now().UTC().Add(q.ttl)
	j.Updated = q.now().UTC()
	err := q.store.Update(ctx, func(tx store.Tx) error { return put(ctx, tx, &j, j.version) })
	if errors.Is(err, store.ErrConflict) {
		return nil, ErrLeaseLost
	}
	if err != nil {
		return nil, err
	}
	return &Lease{q: q, job: j}, nil
}

// Lease is a held job. Its methods are safe for concurrent use (the
// keep-alive renews while the work updates progress).
type Lease struct {
	q   *Queue
	mu  sync.Mutex
	job Job
}

// Job returns the job as last written by this lease.
func (l *Lease) Job() Job {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.job
}

// KeepAlive renews the lease every third of its TTL until stop is called.
// The returned context is cancelled if the lease is lost, so the work stops
// before another server's copy of it could interleave.
func (l *Lease) KeepAlive(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(l.q.ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if err := l.Renew(ctx); errors.Is(err, ErrLeaseLost) {
					cancel(err)
					return
				}
			}
		}
	}()
	return ctx, func() { close(done); cancel(nil) }
}

// Update changes the job under the lease (progress, data) and renews it.
// It fails with ErrLeaseLost if another server took the job meanwhile.
func (l *Lease) Update(ctx context.Context, fn func(j *Job) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	j := l.job
	if err := fn(&j); err != nil {
		return err
	}
	now := l.q.now().UTC()
	j.LeaseUntil, j.Updated = now.Add(l.q.ttl), now
	err := l.q.store.Update(ctx, func(tx store.Tx) error { return put(ctx, tx, &j, l.job.version) })
	if errors.Is(err, store.ErrConflict) {
		return ErrLeaseLost
	}
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	l.job = j
	return nil
}

// Renew extends the lease.
func (l *Lease) Renew(ctx context.Context) error {
	return l.Update(ctx, func(*Job) error { return nil })
}

// Finish ends the job: Succeeded when jobErr is nil, else Failed with its
// message (a failed job can be re-Put and run again).
func (l *Lease) Finish(ctx context.Context, jobErr error) error {
	return l.Update(ctx, func(j *Job) error {
		j.Owner, j.LeaseUntil = "", time.Time{}
		if jobErr != nil {
			j.State, j.Error = StateFailed, jobErr.Error()
		} else {
			j.State, j.Error = StateSucceeded, ""
		}
		return nil
	})
}

func put(ctx context.Context, tx store.Tx, j *Job, version int64) error {
	raw, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	v, err := tx.Put(ctx, Kind, j.ID, raw, version)
	if err != nil {
		return err
	}
	j.version = v
	return nil
}

func decode(rec store.Record) (Job, error) {
	var j Job
	if err := json.Unmarshal(rec.Value, &j); err != nil {
		return Job{}, fmt.Errorf("jobs: record %s: %w", rec.Key, err)
	}
	j.version = rec.Version
	return j, nil
}
