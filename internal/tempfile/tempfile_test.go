package tempfile

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func names(ls []Leftover) (removed, kept []string) {
	for _, l := range ls {
		if l.Removed {
			removed = append(removed, filepath.Base(l.Path))
		} else {
			kept = append(kept, filepath.Base(l.Path))
		}
	}
	return
}

func TestSweep(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "m.seedlm")
	live, err := Create(out) // a running writer: locked
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	dead, err := Create(out) // a killed writer: lock released
	if err != nil {
		t.Fatal(err)
	}
	dead.Close()
	d, err := MkdirTemp(filepath.Join(dir, "folder"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d.Path, "x.safetensors"), []byte("abc"), 0o644)
	d.Close()
	for _, n := range []string{".m.seedlm.layer0.tmp-12", ".m.safetensors.34.tmp", ".other.tmp-5", "m.seedlm.seedlm-tmp-1", ".x.seedlm-tmp-abc"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	os.Symlink(dead.Name(), filepath.Join(dir, ".link.seedlm-tmp-9"))

	// Just now: nothing is old enough to remove; the abandoned ones and
	// the older seedlm's files are reported, the live one is not.
	left, err := Sweep(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	removed, kept := names(left)
	want := strings.Join([]string{filepath.Base(d.Path), ".m.safetensors.34.tmp", ".m.seedlm.layer0.tmp-12", filepath.Base(dead.Name())}, " ")
	if len(removed) != 0 || strings.Join(sorted(kept), " ") != strings.Join(sorted(strings.Fields(want)), " ") {
		t.Fatalf("fresh sweep removed %v, reported %v; want to report %s", removed, kept, want)
	}
	// Later: the abandoned ones go, the live one and the legacy files stay.
	left, _ = Sweep(dir, time.Now().Add(StaleAfter+time.Minute))
	removed, kept = names(left)
	if strings.Join(sorted(removed), " ") != strings.Join(sorted([]string{filepath.Base(d.Path), filepath.Base(dead.Name())}), " ") {
		t.Errorf("stale sweep removed %v", removed)
	}
	if strings.Join(sorted(kept), " ") != ".m.safetensors.34.tmp .m.seedlm.layer0.tmp-12" {
		t.Errorf("stale sweep kept %v", kept)
	}
	if _, err := os.Stat(live.Name()); err != nil {
		t.Errorf("live temp file removed: %v", err)
	}
	for _, l := range left {
		if !strings.Contains(l.String(), l.Path) {
			t.Errorf("report %q does not name %s", l, l.Path)
		}
	}
}

func TestMkdirTempMode(t *testing.T) {
	d, err := MkdirTemp(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	st, _ := os.Stat(d.Path)
	if st.Mode().Perm() != 0o755 {
		t.Errorf("mode %#o, want 0755", st.Mode().Perm())
	}
}

// An open temp file's modification time is kept fresh, so a sweep never
// takes a slow writer's file for abandoned.
func TestHeartbeat(t *testing.T) {
	defer func(d time.Duration) { heartbeat = d }(heartbeat)
	heartbeat = 10 * time.Millisecond
	f, err := Create(filepath.Join(t.TempDir(), "m.seedlm"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := time.Now().Add(-time.Hour)
	os.Chtimes(f.Name(), old, old)
	time.Sleep(100 * time.Millisecond)
	st, _ := os.Stat(f.Name())
	if time.Since(st.ModTime()) > time.Minute {
		t.Errorf("modification time not refreshed: %v", st.ModTime())
	}
}

func TestFreeBytes(t *testing.T) {
	n, ok := FreeBytes(t.TempDir())
	if runtime.GOOS == "linux" && (!ok || n <= 0) {
		t.Errorf("FreeBytes = %d, %v", n, ok)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	slices.Sort(out)
	return out
}

func TestCreateMode(t *testing.T) {
	f, err := Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %#o, want 0644", st.Mode().Perm())
	}
}
