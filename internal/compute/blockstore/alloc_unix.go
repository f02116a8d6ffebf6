//go:build unix

package blockstore

import (
	"os"
	"syscall"
)

// allocated is the space a file really occupies (st_blocks are 512-byte units).
func allocated(st os.FileInfo) int64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return int64(s.Blocks) * 512
	}
	return st.Size()
}
