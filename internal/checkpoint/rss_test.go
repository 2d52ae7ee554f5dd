package checkpoint

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"github.com/seedlm/seedlm/internal/dtype"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/seedlm/seedlm/internal/safetensors"
)

// Peak-memory check on a model of more than 1 GB, off by default (it writes
// the model to disk). Run:
//
//	SEEDLM_RSS_DIR=/tmp/rss go test -run TestPeakRSS -v ./internal/checkpoint/
//
// It writes big_f32.safetensors and big_bf16.safetensors there (kept for
// reruns, never in the repo), then reads every tensor of each in a fresh
// child process and compares the child's VmHWM with the largest tensor's
// float32 size. SEEDLM_RSS_FILE=path measures any other checkpoint.

const rssSlack = 48 << 20 // Go runtime, test binary, staging buffer

func TestPeakRSS(t *testing.T) {
	dir := os.Getenv("SEEDLM_RSS_DIR")
	if dir == "" {
		t.Skip("set SEEDLM_RSS_DIR to a scratch folder to run the >1 GB peak-memory check")
	}
	os.MkdirAll(dir, 0o755)
	var files []string
	if p := os.Getenv("SEEDLM_RSS_FILE"); p != "" {
		files = append(files, p)
	} else {
		files = append(files, bigModel(t, dir, "F32"), bigModel(t, dir, "BF16"))
	}
	for _, p := range files {
		for _, mode := range []string{"fresh", "reuse"} {
			cmd := exec.Command(os.Args[0], "-test.run=^TestPeakRSSChild$", "-test.v")
			cmd.Env = append(os.Environ(), "SEEDLM_RSS_CHILD="+p, "SEEDLM_RSS_MODE="+mode)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			var hwm, largest, total int64
			for _, line := range strings.Split(string(out), "\n") {
				if i := strings.Index(line, "RESULT "); i >= 0 {
					fmt.Sscanf(line[i:], "RESULT hwm=%d largest=%d total=%d", &hwm, &largest, &total)
				}
			}
			st, _ := os.Stat(p)
			t.Logf("%s (%d MB file, %s buffers): peak RSS %d MiB, largest tensor as float32 %d MiB, all tensors as float32 %d MiB",
				filepath.Base(p), st.Size()/1e6, mode, hwm>>20, largest>>20, total>>20)
			if hwm == 0 || hwm > largest+rssSlack {
				t.Errorf("peak RSS %d MiB exceeds largest tensor %d MiB + %d MiB", hwm>>20, largest>>20, rssSlack>>20)
			}
		}
	}
}

// bigModel writes (once) a model of about 1.1 GB: four large tensors and
// twenty small ones.
func bigModel(t *testing.T, dir, dt string) string {
	path := filepath.Join(dir, "big_"+strings.ToLower(dt)+".safetensors")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	var hdrs []safetensors.TensorHeader
	big := []int64{8192, 8192} // 256 MiB of F32
	if dt == "BF16" {
		big = []int64{16384, 8192} // 256 MiB of BF16, 512 MiB as float32
	}
	for i := 0; i < 4; i++ {
		hdrs = append(hdrs, safetensors.TensorHeader{Name: fmt.Sprintf("layers.%d.big", i), DType: dt, Shape: big})
		for j := 0; j < 5; j++ {
			hdrs = append(hdrs, safetensors.TensorHeader{Name: fmt.Sprintf("layers.%d.small%d", i, j), DType: dt, Shape: []int64{1024, 1024 + int64(j)}})
		}
	}
	w, err := safetensors.NewWriter(path, hdrs, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	for _, h := range hdrs {
		n, _ := dtype.ByteLen(h.DType, h.Shape)
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
			for i := 0; i+4 <= len(buf); i += 4 { // small varied values
				binary.LittleEndian.PutUint32(buf[i:], math.Float32bits(float32(i%1000)/1000-0.5))
			}
		}
		if err := w.WriteTensor(h.Name, buf[:n]); err != nil {
			w.Abort()
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPeakRSSChild(t *testing.T) {
	path := os.Getenv("SEEDLM_RSS_CHILD")
	if path == "" {
		t.Skip("child of TestPeakRSS")
	}
	src, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	reuse := os.Getenv("SEEDLM_RSS_MODE") == "reuse"
	var largest, total int64
	var sum float64
	var buf []float32
	for _, ti := range src.Tensors() {
		var v []float32
		if reuse {
			v, err = ReadFloat32Into(src, ti.Name, buf)
			buf = v
		} else {
			v, err = src.ReadFloat32(ti.Name)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range v {
			sum += float64(x)
		}
		largest = max(largest, 4*int64(len(v)))
		total += 4 * int64(len(v))
		v = nil
	}
	fmt.Printf("RESULT hwm=%d largest=%d total=%d sum=%g\n", vmHWM(t), largest, total, sum)
}

func vmHWM(t *testing.T) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
