package authz

import (
	"context"
	"encoding/json"

	"github.com/cvault/cvault/internal/store"
)

// AssignMany writes many assignments in one transaction (benchmark setup:
// 100,000 single-record commits would take minutes of fsyncs).
func (s *Service) AssignMany(ctx context.Context, as []Assignment) error {
	for i := range as {
		if err := s.validate(&as[i]); err != nil {
			return err
		}
	}
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		for _, a := range as {
			b, err := json.Marshal(a)
			if err != nil {
				return err
			}
			if _, err := tx.Put(ctx, KindAssignment, assignmentKey(a.Scope, a.Name), b, store.Absent); err != nil {
				return err
			}
			if _, err := tx.Put(ctx, KindAssignmentUnique, uniqueKey(a), []byte(assignmentKey(a.Scope, a.Name)), store.Absent); err != nil {
				return err
			}
		}
		return nil
	})
	s.dirty.Store(true)
	return err
}
