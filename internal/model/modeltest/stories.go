// Package modeltest opens the real test model for packages that run the
// forward pass (eval, sensitivity).
package modeltest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/seedlm/seedlm/internal/checkpoint"
	"github.com/seedlm/seedlm/internal/model"
)

// Stories opens stories260K (../shared/data beside the repository: its
// config.json and the F32 weights), or skips t with the reason when the
// shared data is absent. The source is closed when t ends.
func Stories(t testing.TB) (*model.Config, checkpoint.Source) {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(here), "../../../../shared/data/stories260K")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("shared model data absent (%v)", err)
	}
	c, err := model.LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := checkpoint.Open(filepath.Join(dir, "stories260K.f32.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return c, src
}
