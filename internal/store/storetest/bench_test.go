package storetest_test

import (
	"testing"

	"github.com/cvault/cvault/internal/store"
	"github.com/cvault/cvault/internal/store/embedded/embeddedtest"
	"github.com/cvault/cvault/internal/store/postgres"
	"github.com/cvault/cvault/internal/store/postgres/pgtest"
	"github.com/cvault/cvault/internal/store/storetest"
)

// BenchmarkStore compares the backends in one run:
//
//	go test -run '^$' -bench BenchmarkStore -benchtime 2000x ./internal/store/storetest/
func BenchmarkStore(b *testing.B) {
	b.Run("embedded", func(b *testing.B) {
		storetest.Bench(b, func(b *testing.B) store.Store { return embeddedtest.Open(b) })
	})
	b.Run("postgres", func(b *testing.B) {
		storetest.Bench(b, func(b *testing.B) store.Store {
			return pgtest.Open(b, postgres.Options{MaxConns: 8})
		})
	})
}
