// Package loadgen is cvault's in-repo HTTP load generator (`cvault bench`):
// a fixed number of keep-alive workers send requests for a duration or a
// count, and it reports throughput and latency percentiles. It exists so
// BENCHMARKS.md can compare cvault's endpoints with the /healthz floor and
// raw crypto on the same machine in the same run.
package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a run. Requests (if > 0) bounds the count; Duration
// bounds the time; at least one must be set.
type Options struct {
	Concurrency int
	Duration    time.Duration
	Requests    int
	// Do sends one request; worker is the worker's index. It returns an
	// error for a failed or unexpected response.
	Do func(ctx context.Context, worker int) error
}

// Result summarises a run.
type Result struct {
	Requests int
	Errors   int
	FirstErr error
	Elapsed  time.Duration
	P50, P99 time.Duration
}

// RPS is successful requests per second.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests-r.Errors) / r.Elapsed.Seconds()
}

func (r Result) String() string {
	return fmt.Sprintf("%d requests, %d errors in %s: %.0f req/s, p50 %s, p99 %s",
		r.Requests, r.Errors, r.Elapsed.Round(time.Millisecond), r.RPS(), r.P50, r.P99)
}

// Run runs the load and blocks until it ends.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Concurrency < 1 || o.Do == nil || (o.Duration <= 0 && o.Requests <= 0) {
		return Result{}, fmt.Errorf("loadgen: need Concurrency ≥ 1, Do, and Duration or Requests")
	}
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	var (
		issued   atomic.Int64
		mu       sync.Mutex
		lat      []time.Duration
		errs     int
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	for w := range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1024)
			var localErrs int
			var localFirst error
			for ctx.Err() == nil {
				if o.Requests > 0 && issued.Add(1) > int64(o.Requests) {
					break
				}
				t0 := time.Now()
				err := o.Do(ctx, w)
				if ctx.Err() != nil && err != nil {
					break // the run ended mid-request; not a server error
				}
				local = append(local, time.Since(t0))
				if err != nil {
					localErrs++
					if localFirst == nil {
						localFirst = err
					}
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			errs += localErrs
			if firstErr == nil {
				firstErr = localFirst
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res := Result{Requests: len(lat), Errors: errs, FirstErr: firstErr, Elapsed: time.Since(start)}
	if len(lat) > 0 {
		slices.Sort(lat)
		res.P50 = lat[len(lat)*50/100]
		res.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return res, nil
}

// Get returns a Do that GETs url with client and expects want.
func Get(client *http.Client, url string, header http.Header, want int) func(context.Context, int) error {
	return func(ctx context.Context, _ int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		res, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != want {
			return fmt.Errorf("GET %s: status %d, want %d", url, res.StatusCode, want)
		}
		return nil
	}
}
