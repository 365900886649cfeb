package wal

import (
	"errors"
	"os"
	"syscall"
)

// datasync flushes f's data and only the metadata needed to read it back. Segments are written in
// full before use, so an append changes no metadata and costs a single device flush.
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// allocate reserves size bytes for f in as few extents as the file system can give. It is only an
// optimisation: where fallocate is not supported the zero-fill that follows allocates the space.
func allocate(f *os.File, size int64) {
	_ = syscall.Fallocate(int(f.Fd()), 0, 0, size)
}
