//go:build linux || darwin || freebsd || dragonfly

package tempfile

import (
	"os"
	"syscall"
)

// lock takes an exclusive lock on f for as long as it is open.
func lock(f *os.File) { syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) }

// tryLock reports whether f could be locked (nobody else holds it). The
// lock is released when f is closed.
func tryLock(f *os.File) bool {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}

// FreeBytes is the space an unprivileged user may still write in dir's
// file system; ok is false where it cannot be told.
func FreeBytes(dir string) (n int64, ok bool) {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}
