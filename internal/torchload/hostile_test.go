package torchload

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pk builds pickle bytes by hand, for inputs torch.save would never write.
type pk struct{ bytes.Buffer }

func (p *pk) op(b ...byte) *pk { p.Write(b); return p }
func (p *pk) str(s string) *pk {
	p.WriteByte('X')
	binary.Write(&p.Buffer, binary.LittleEndian, uint32(len(s)))
	p.WriteString(s)
	return p
}
func (p *pk) int(v int32) *pk {
	p.WriteByte('J')
	binary.Write(&p.Buffer, binary.LittleEndian, v)
	return p
}
func (p *pk) global(mod, name string) *pk { p.WriteString("c" + mod + "\n" + name + "\n"); return p }
func (p *pk) ints(vs ...int32) *pk {
	p.op('(')
	for _, v := range vs {
		p.int(v)
	}
	return p.op('t')
}

// tensorPickle is {name: _rebuild_tensor_v2(storage(key, numel), off, shape, stride, False, {})}.
func tensorPickle(name, storageClass, key string, numel, off int32, shape, stride []int32) []byte {
	var p pk
	p.op(0x80, 2, '}', '(').str(name).global("torch._utils", "_rebuild_tensor_v2").op('(')
	p.op('(').str("storage").global("torch", storageClass).str(key).str("cpu").int(numel).op('t', 'Q')
	p.int(off).ints(shape...).ints(stride...).op(0x89, '}', 't', 'R', 'u', '.')
	return p.Bytes()
}

type entry struct {
	name    string
	data    []byte
	deflate bool
}

func buildZip(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, e := range entries {
		m := zip.Store
		if e.deflate {
			m = zip.Deflate
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: m})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(e.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func f32s(n int) []byte { return make([]byte, 4*n) }

func open(name string, b []byte) (*File, error) {
	return NewReader(name, bytes.NewReader(b), int64(len(b)))
}

func TestHostileInputs(t *testing.T) {
	okPkl := tensorPickle("w", "FloatStorage", "0", 6, 0, []int32{2, 3}, []int32{3, 1})
	big := bytes.Repeat([]byte{0}, 80<<20)
	cases := []struct {
		name string
		data []byte
		want []string // substrings of the error
	}{
		{"valid control", buildZip(t, entry{"a/data.pkl", okPkl, false}, entry{"a/data/0", f32s(6), false}), nil},
		{"storage compressed", buildZip(t, entry{"a/data.pkl", okPkl, false}, entry{"a/data/0", f32s(6), true}), []string{"compressed"}},
		{"storage too short", buildZip(t, entry{"a/data.pkl", okPkl, false}, entry{"a/data/0", f32s(5), false}), []string{"declares 6", "20 bytes"}},
		{"storage missing", buildZip(t, entry{"a/data.pkl", okPkl, false}), []string{"no zip entry"}},
		{"view past storage", buildZip(t,
			entry{"a/data.pkl", tensorPickle("w", "FloatStorage", "0", 6, 1, []int32{2, 3}, []int32{3, 1}), false},
			entry{"a/data/0", f32s(6), false}), []string{`tensor "w"`, "reaches element 6"}},
		{"broadcast bigger than file", buildZip(t,
			entry{"a/data.pkl", tensorPickle("w", "FloatStorage", "0", 1, 0, []int32{1 << 30, 1 << 30}, []int32{0, 0}), false},
			entry{"a/data/0", f32s(1), false}), []string{`tensor "w"`, "more bytes than the whole"}},
		{"negative stride", buildZip(t,
			entry{"a/data.pkl", tensorPickle("w", "FloatStorage", "0", 6, 5, []int32{6}, []int32{-1}), false},
			entry{"a/data/0", f32s(6), false}), []string{"negative"}},
		{"rank mismatch", buildZip(t,
			entry{"a/data.pkl", tensorPickle("w", "FloatStorage", "0", 6, 0, []int32{6}, []int32{1, 1}), false},
			entry{"a/data/0", f32s(6), false}), []string{"stride has 2"}},
		{"unknown storage type", buildZip(t,
			entry{"a/data.pkl", tensorPickle("w", "QInt8Storage", "0", 6, 0, []int32{6}, []int32{1}), false},
			entry{"a/data/0", f32s(6), false}), []string{`"torch.QInt8Storage"`, "allow-list"}},
		{"malicious global", buildZip(t,
			entry{"a/data.pkl", new(pk).op(0x80, 2).global("os", "system").str("rm -rf /").op(0x85, 'R', '.').Bytes(), false}),
			[]string{`"os.system"`, "allow-list"}},
		{"builtin object shim", buildZip(t,
			entry{"a/data.pkl", new(pk).op(0x80, 2, '(').global("__builtin__", "object").op('l', '.').Bytes(), false}),
			[]string{"__builtin__.object"}},
		{"zip bomb pickle", buildZip(t, entry{"a/data.pkl", big, true}), []string{"over the", "limit"}},
		{"BINBYTES8 huge length", buildZip(t, entry{"a/data.pkl", append([]byte{0x80, 4, 0x8e}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '.'), false}),
			[]string{"runs past the end"}},
		{"FRAME huge", buildZip(t, entry{"a/data.pkl", append([]byte{0x80, 4, 0x95}, 0, 0, 0, 0, 0, 1, 0, 0, '.'), false}),
			[]string{"runs past the end"}},
		{"LONG4 huge", buildZip(t, entry{"a/data.pkl", append([]byte{0x80, 2, 0x8b}, 0xff, 0xff, 0xff, 0x00, '.'), false}),
			[]string{"LONG4"}},
		{"empty LONG1", buildZip(t, entry{"a/data.pkl", []byte{0x80, 2, 0x8a, 0, '.'}, false}), []string{"empty LONG1"}},
		{"no STOP", buildZip(t, entry{"a/data.pkl", []byte{0x80, 2, '}'}, false}), []string{"without a STOP"}},
		{"unknown opcode", buildZip(t, entry{"a/data.pkl", []byte{0x80, 2, 0xff, '.'}, false}), []string{"unsupported opcode"}},
		{"mark flood", buildZip(t, entry{"a/data.pkl", append(bytes.Repeat([]byte{'('}, 4<<20), '.'), false}), []string{"MiB of memory"}},
		{"stack underflow", buildZip(t, entry{"a/data.pkl", []byte{0x80, 2, 'R', '.'}, false}), []string{"cannot unpickle"}},
		{"unhashable key panics in gopickle", buildZip(t, entry{"a/data.pkl",
			new(pk).op(0x80, 2).global("collections", "OrderedDict").op(')', 'R', 'C', 1, 'k', ']', 's', '.').Bytes(), false}),
			[]string{"panic"}},
		{"not a dict", buildZip(t, entry{"a/data.pkl", []byte{0x80, 2, 'K', 5, '.'}, false}), nil},
		{"torchscript", buildZip(t, entry{"a/data.pkl", okPkl, false}, entry{"a/constants.pkl", okPkl, false}), []string{"TorchScript"}},
		{"two data.pkl", buildZip(t, entry{"a/data.pkl", okPkl, false}, entry{"b/data.pkl", okPkl, false}), []string{"found 2"}},
		{"bad byteorder", buildZip(t, entry{"a/data.pkl", okPkl, false}, entry{"a/byteorder", []byte("middle"), false}, entry{"a/data/0", f32s(6), false}),
			[]string{"byteorder"}},
		{"random bytes", []byte("hello, this is not a model at all"), []string{"not a torch.save checkpoint"}},
		{"empty file", nil, []string{"not a torch.save checkpoint"}},
		{"tar", append(make([]byte, 257), []byte("ustar\x0000")...), []string{"tar-format"}},
		{"truncated zip", buildZip(t, entry{"a/data.pkl", okPkl, false}, entry{"a/data/0", f32s(6), false})[:60], []string{"zip"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := open("mem.pt", c.data)
			if c.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				for _, ts := range f.Tensors() {
					if _, err := f.ReadRaw(ts.Name); err != nil {
						t.Fatal(err)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; tensors %v", f.Tensors())
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "mem.pt") {
				t.Errorf("error does not name the file: %v", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
		})
	}
}

// A deflated data.pkl whose directory entry claims 100 bytes but inflates to
// 10 MiB: reading must stop at the claimed size with an error.
func TestLyingZipBomb(t *testing.T) {
	z := buildZip(t, entry{"a/data.pkl", bytes.Repeat([]byte{'N'}, 10<<20), true})
	cd := bytes.LastIndex(z, []byte("PK\x01\x02"))
	if cd < 0 {
		t.Fatal("no central directory")
	}
	binary.LittleEndian.PutUint32(z[cd+24:], 100)
	_, err := open("bomb.pt", z)
	if err == nil || !strings.Contains(err.Error(), "data.pkl") {
		t.Fatalf("err = %v", err)
	}
}

func TestHostileFixtures(t *testing.T) {
	for file, want := range map[string]string{
		"evil_global.pt":  `"posix.system"`,
		"whole_module.pt": `"torch.nn.modules.linear.Linear"`,
		"../../go.mod":    "not a torch.save checkpoint",
		"missing-file.pt": "cannot open",
		"../safetensors":  "not a regular file",
	} {
		_, err := Open(filepath.Join(fixtures, file))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), filepath.Base(file)) {
			t.Errorf("%s: err = %v, want it to name the file and contain %s", file, err, want)
		}
	}
}

// TestTruncatedFixtures cuts every fixture at many lengths: each must give an
// error (or, past the last storage byte, the same tensors), never a panic.
func TestTruncatedFixtures(t *testing.T) {
	for _, fx := range []string{"dtypes.pt", "views.pt", "legacy.pt", "params_proto4.pt"} {
		b, err := os.ReadFile(filepath.Join(fixtures, fx))
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(b); n += 1 + n/50 {
			f, err := open(fx, b[:n])
			if err != nil {
				continue
			}
			for _, ts := range f.Tensors() {
				f.ReadRaw(ts.Name) // may fail; must not panic
			}
			if !f.Legacy() {
				t.Errorf("%s cut to %d bytes opened without error", fx, n)
			}
		}
	}
}

func TestLegacyBitFlips(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(fixtures, "legacy.pt"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(b); i++ {
		c := bytes.Clone(b)
		c[i] ^= 0xff
		if f, err := open("legacy.pt", c); err == nil {
			for _, ts := range f.Tensors() {
				f.ReadRaw(ts.Name)
			}
		}
	}
}
