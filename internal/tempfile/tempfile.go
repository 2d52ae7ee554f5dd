// Package tempfile holds the temporary files (and folders) seedlm writes
// beside an output before renaming them into place, and what is needed to
// find and remove the ones a killed run left behind.
//
// Every temp name is ".<output base name>.seedlm-tmp-<random digits>". The
// writing process holds an exclusive lock (flock) on it and refreshes its
// modification time every minute while it is open. Sweep removes an entry
// with that name only when nobody holds its lock and it has not been
// touched for StaleAfter: a lock a killed process held is released by the
// kernel, and the age guards against file systems where locks are local to
// one machine (a run on another machine keeps its heartbeat going).
package tempfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"
)

// Tag is the part of every temp name that marks it as seedlm's.
const Tag = ".seedlm-tmp-"

// StaleAfter is how long an unlocked temp entry must have gone untouched
// before Sweep removes it.
const StaleAfter = 15 * time.Minute

// heartbeat is how often an open temp entry's modification time is
// refreshed.
var heartbeat = time.Minute

var (
	ours = regexp.MustCompile(`^\..+\.seedlm-tmp-[0-9]+$`)
	// Older releases named archive temps .NAME.layerK.tmp-N and
	// .NAME.final.tmp-N, and safetensors temps .NAME.N.tmp (their sharded
	// temp folders, .NAME.tmp-N, are too plain a name to claim).
	legacy = regexp.MustCompile(`^\..+(\.(layer[0-9]+|final)\.tmp-[0-9]+|\.(safetensors|json)\.[0-9]+\.tmp)$`)
)

// pattern is the os.CreateTemp / os.MkdirTemp pattern for out.
func pattern(out string) (dir, pat string) {
	dir, base := filepath.Split(filepath.Clean(out))
	if dir == "" {
		dir = "."
	}
	return dir, "." + base + Tag + "*"
}

// File is a locked temp file beside an output.
type File struct {
	*os.File
	beat *beat
}

// Create makes a temp file in out's folder (so a rename to out stays on one
// file system), mode 0644 like the files it becomes (os.CreateTemp makes
// them 0600), locked and kept fresh until Close.
func Create(out string) (*File, error) {
	dir, pat := pattern(out)
	f, err := os.CreateTemp(dir, pat)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	lock(f) // best effort: where locks are unsupported the age still protects it
	return &File{File: f, beat: startBeat(f.Name())}, nil
}

// Close stops the heartbeat and closes the file (which releases the lock).
func (f *File) Close() error {
	f.beat.stop()
	return f.File.Close()
}

// Dir is a locked temp folder beside an output.
type Dir struct {
	Path string
	lock *os.File
	beat *beat
}

// MkdirTemp makes a temp folder in out's folder, mode 0755 like mkdir's
// usual result (os.MkdirTemp makes it 0700), locked and kept fresh until
// Close.
func MkdirTemp(out string) (*Dir, error) {
	dir, pat := pattern(out)
	p, err := os.MkdirTemp(dir, pat)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(p, 0o755); err != nil {
		os.Remove(p)
		return nil, err
	}
	d := &Dir{Path: p}
	if f, err := os.Open(p); err == nil {
		lock(f)
		d.lock = f
	}
	d.beat = startBeat(p)
	return d, nil
}

// Close stops the heartbeat and releases the lock (the folder stays).
func (d *Dir) Close() error {
	d.beat.stop()
	if d.lock != nil {
		return d.lock.Close()
	}
	return nil
}

// beat refreshes a path's modification time until stopped.
type beat struct {
	once sync.Once
	done chan struct{}
}

func startBeat(path string) *beat {
	b := &beat{done: make(chan struct{})}
	go func() {
		t := time.NewTicker(heartbeat)
		defer t.Stop()
		for {
			select {
			case <-b.done:
				return
			case now := <-t.C:
				if os.Chtimes(path, now, now) != nil {
					return // renamed into place or removed
				}
			}
		}
	}()
	return b
}

func (b *beat) stop() { b.once.Do(func() { close(b.done) }) }

// Leftover is a temp entry Sweep found.
type Leftover struct {
	Path    string
	Bytes   int64 // a folder's files added up
	ModTime time.Time
	// Removed: Sweep deleted it. Otherwise Reason says why it stayed.
	Removed bool
	Reason  string
}

func (l Leftover) String() string {
	if l.Removed {
		return fmt.Sprintf("removed %s (%d bytes), left by an interrupted seedlm run last active %s",
			l.Path, l.Bytes, l.ModTime.Format(time.RFC3339))
	}
	return fmt.Sprintf("%s (%d bytes, last written %s) %s", l.Path, l.Bytes, l.ModTime.Format(time.RFC3339), l.Reason)
}

// Sweep looks in dir for seedlm temp entries. It removes those it provably
// owns that no running process uses (see the package comment) and reports
// the rest that look abandoned: unlocked ones still younger than
// StaleAfter, and the temp files of older seedlm versions (which took no
// lock, so they are only reported). Entries a running seedlm holds are not
// reported. Errors reading dir are returned; errors on single entries only
// keep them out of the result.
func Sweep(dir string, now time.Time) ([]Leftover, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Leftover
	for _, e := range ents {
		name := e.Name()
		isOurs, isLegacy := ours.MatchString(name), legacy.MatchString(name)
		if !isOurs && !isLegacy {
			continue
		}
		if e.Type()&fs.ModeSymlink != 0 || !(e.Type().IsRegular() || e.IsDir()) {
			continue
		}
		p := filepath.Join(dir, name)
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		l := Leftover{Path: p, Bytes: size(p, fi), ModTime: fi.ModTime()}
		if isLegacy && !isOurs {
			if e.IsDir() {
				continue
			}
			l.Reason = "looks like a temp file of an older seedlm that was interrupted; remove it if no seedlm is running"
			out = append(out, l)
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		locked := !tryLock(f)
		switch {
		case locked:
			// A running seedlm is writing it.
		case now.Sub(fi.ModTime()) < StaleAfter:
			l.Reason = fmt.Sprintf("is not in use and looks like a leftover of an interrupted run; it is removed once it is %v old", StaleAfter)
			out = append(out, l)
		default:
			var rerr error
			if e.IsDir() {
				rerr = os.RemoveAll(p)
			} else {
				rerr = os.Remove(p)
			}
			if rerr == nil {
				l.Removed = true
			} else {
				l.Reason = "is a leftover of an interrupted run, but removing it failed: " + rerr.Error()
			}
			out = append(out, l)
		}
		f.Close()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// size is a file's size or the total of a folder's regular files.
func size(p string, fi fs.FileInfo) int64 {
	if !fi.IsDir() {
		return fi.Size()
	}
	var n int64
	filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if i, err := d.Info(); err == nil {
				n += i.Size()
			}
		}
		return nil
	})
	return n
}
