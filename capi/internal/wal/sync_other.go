//go:build !linux

package wal

import "os"

// datasync flushes f. Outside Linux there is no portable fdatasync; a full sync is correct, only
// slower.
func datasync(f *os.File) error { return f.Sync() }

// allocate does nothing outside Linux: the zero-fill that follows allocates the space.
func allocate(*os.File, int64) {}
