package embedded_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cvault/cvault/internal/store"
	"github.com/cvault/cvault/internal/store/embedded"
	"github.com/cvault/cvault/internal/store/embedded/embeddedtest"
	"github.com/cvault/cvault/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return embeddedtest.Open(t) })
}

func TestFileMode(t *testing.T) {
	db := embeddedtest.Open(t)
	fi, err := os.Stat(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Fatalf("file mode %v, want 0600", m)
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db, err := embedded.Open(path, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := store.Put(t.Context(), db, "k", "a", []byte("persisted"), store.Absent)
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := db.Changes(t.Context(), "k")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = embedded.Open(path, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, err := db.Get(t.Context(), "k", "a")
	if err != nil || string(r.Value) != "persisted" || r.Version != v {
		t.Fatalf("after reopen: %+v, %v", r, err)
	}
	if ch2, _ := db.Changes(t.Context(), "k"); ch2 != ch {
		t.Fatalf("Changes after reopen %d, want %d", ch2, ch)
	}
	v2, err := store.Put(t.Context(), db, "k", "b", nil, store.Absent)
	if err != nil || v2 <= v {
		t.Fatalf("version after reopen %d (%v), want > %d", v2, err, v)
	}
}

func TestLockedInProcess(t *testing.T) {
	db := embeddedtest.Open(t)
	start := time.Now()
	_, err := embedded.Open(db.Path(), embedded.Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, embedded.ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second Open took %v", d)
	}
}

// TestLockedOtherProcess re-runs this test binary as the second process.
func TestLockedOtherProcess(t *testing.T) {
	if path := os.Getenv("CVAULT_EMBEDDED_LOCK_CHILD"); path != "" {
		_, err := embedded.Open(path, embedded.Options{LockTimeout: 100 * time.Millisecond})
		if errors.Is(err, embedded.ErrLocked) {
			os.Stdout.WriteString("CHILD-LOCKED: " + err.Error() + "\n")
			os.Exit(0)
		}
		os.Stdout.WriteString("CHILD-UNEXPECTED: " + errString(err) + "\n")
		os.Exit(3)
	}
	db := embeddedtest.Open(t)
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestLockedOtherProcess$")
	cmd.Env = append(os.Environ(), "CVAULT_EMBEDDED_LOCK_CHILD="+db.Path())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "CHILD-LOCKED") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "locked by another process") {
		t.Fatalf("error message is not clear: %s", out)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestSchemaTooNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db, err := embedded.Open(path, embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	// A newer cvault wrote this file.
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte{0, 0, 0, 0, 0, 0, 0, 99})
	})
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := embedded.Open(path, embedded.Options{}); !errors.Is(err, embedded.ErrSchemaTooNew) {
		t.Fatalf("Open = %v, want ErrSchemaTooNew", err)
	}
	// And the refusal released the lock: the file is openable by bbolt again.
	b, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("file still locked after refusal: %v", err)
	}
	b.Close()
}

func TestSchemaRecorded(t *testing.T) {
	db := embeddedtest.Open(t)
	path := db.Path()
	db.Close()
	b, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.View(func(tx *bolt.Tx) error {
		got := tx.Bucket([]byte("meta")).Get([]byte("schema"))
		want := []byte{0, 0, 0, 0, 0, 0, 0, byte(embedded.SchemaVersion())}
		if !bytes.Equal(got, want) {
			t.Errorf("schema record %x, want %x", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRawScan(t *testing.T) { storetest.CheckRawScan(t, embeddedtest.Open(t)) }
