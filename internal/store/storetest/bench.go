package storetest

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/cvault/cvault/internal/store"
)

// benchKeys is the key space of the put/get/update benchmarks.
const benchKeys = 1000

// Bench runs the store benchmarks as sub-benchmarks of b: put (unconditional
// single-record Update), get, update (read-modify-write in Update on one of
// benchKeys records) and update-hot (the same on one counter, the worst case
// for optimistic concurrency), each at 1 and 8 goroutines. open returns a
// fresh store per sub-benchmark.
func Bench(b *testing.B, open func(b *testing.B) store.Store) {
	value := make([]byte, 256) // a typical JSON document
	for _, op := range []struct {
		name string
		fn   func(ctx context.Context, s store.Store, i int) error
	}{
		{"put", func(ctx context.Context, s store.Store, i int) error {
			_, err := store.Put(ctx, s, "bench", strconv.Itoa(i%benchKeys), value, store.Any)
			return err
		}},
		{"get", func(ctx context.Context, s store.Store, i int) error {
			_, err := s.Get(ctx, "bench", strconv.Itoa(i%benchKeys))
			return err
		}},
		{"update", func(ctx context.Context, s store.Store, i int) error {
			return increment(ctx, s, strconv.Itoa(i%benchKeys))
		}},
		{"update-hot", func(ctx context.Context, s store.Store, i int) error {
			return increment(ctx, s, "0")
		}},
	} {
		for _, goroutines := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/g=%d", op.name, goroutines), func(b *testing.B) {
				ctx := b.Context()
				s := open(b)
				err := s.Update(ctx, func(tx store.Tx) error {
					for i := range benchKeys {
						if _, err := tx.Put(ctx, "bench", strconv.Itoa(i), []byte("0"), store.Any); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				if goroutines == 1 {
					i := 0
					for b.Loop() {
						if err := op.fn(ctx, s, i); err != nil {
							b.Fatal(err)
						}
						i++
					}
					return
				}
				b.SetParallelism(max(1, goroutines/runtime.GOMAXPROCS(0)))
				var next atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := op.fn(ctx, s, int(next.Add(1))); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

func increment(ctx context.Context, s store.Store, key string) error {
	return s.Update(ctx, func(tx store.Tx) error {
		r, err := tx.Get(ctx, "bench", key)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(string(r.Value))
		if err != nil {
			return err
		}
		_, err = tx.Put(ctx, "bench", key, []byte(strconv.Itoa(n+1)), r.Version)
		return err
	})
}
