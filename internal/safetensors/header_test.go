package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// file builds a safetensors file from a header string and a data length.
func file(hdr string, data int) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(hdr)))
	b.WriteString(hdr)
	b.Write(make([]byte, data))
	return b.Bytes()
}

func TestHeaderValidation(t *testing.T) {
	cases := []struct {
		name string
		file []byte
		want []string // error substrings; nil means valid
	}{
		{"valid", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8), nil},
		{"valid padded", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   `, 8), nil},
		{"empty header", file(`{}`, 0), nil},
		{"rank 0 and empty tensors", file(`{"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0,9],"data_offsets":[8,8]},"e2":{"dtype":"I8","shape":[3,0],"data_offsets":[8,8]}}`, 8), nil},
		{"metadata null", file(`{"__metadata__":null}`, 0), nil},
		{"F4 even count", file(`{"a":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]}}`, 3), nil},
		{"F6 whole bytes", file(`{"a":{"dtype":"F6_E2M3","shape":[4],"data_offsets":[0,3]}}`, 3), nil},

		{"too short", []byte{1, 2, 3}, []string{"shorter than the 8-byte"}},
		{"huge header length", append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, '{', '}'), []string{"exceeds"}},
		{"header just over cap", func() []byte {
			b := make([]byte, 8)
			binary.LittleEndian.PutUint64(b, MaxHeaderSize+1)
			return b
		}(), []string{"exceeds the 100000000-byte limit"}},
		{"header past end", func() []byte { b := file(`{}`, 0); b[0] = 200; return b }(), []string{"runs past the end"}},
		{"invalid utf8", file("{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4), []string{"UTF-8"}},
		{"not an object", file(`[1,2]`, 0), []string{"not a JSON object"}},
		{"bad json", file(`{"a":{"dtype":"F32",`, 0), []string{"invalid header"}},
		{"trailing garbage", file(`{} x`, 0), []string{"invalid header"}},
		{"two objects", file(`{}{}`, 0), []string{"after the object"}},
		{"duplicate tensor", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8),
			[]string{`tensor "a"`, "duplicate key"}},
		{"duplicate field", file(`{"a":{"dtype":"F32","dtype":"I32","shape":[1],"data_offsets":[0,4]}}`, 4), []string{`tensor "a"`, `duplicate key "dtype"`}},
		{"case-mismatched field", file(`{"a":{"DTYPE":"F32","shape":[1],"data_offsets":[0,4]}}`, 4), []string{`tensor "a"`, `unknown field "DTYPE"`}},
		{"case-mismatched dtype", file(`{"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}`, 4), []string{`tensor "a"`, `unknown dtype "f32"`}},
		{"unknown dtype", file(`{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}`, 16), []string{`unknown dtype "F128"`}},
		{"missing shape", file(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, 4), []string{`missing "shape"`}},
		{"missing offsets", file(`{"a":{"dtype":"F32","shape":[1]}}`, 4), []string{`missing "data_offsets"`}},
		{"negative dim", file(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4), []string{"non-negative"}},
		{"float dim", file(`{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}`, 4), []string{"non-negative"}},
		{"string dim", file(`{"a":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}}`, 4), []string{"expected an integer"}},
		{"three offsets", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, 8), []string{"more than 2"}},
		{"one offset", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}`, 4), []string{"want 2"}},
		{"end before begin", file(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, 4), []string{`tensor "a"`, "end before"}},
		{"gap", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, 12),
			[]string{`tensor "b"`, "gap"}},
		{"overlap", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8),
			[]string{`tensor "b"`, "overlaps"}},
		{"first not at zero", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), []string{`tensor "a"`, "gap"}},
		{"wrong size", file(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8), []string{`tensor "a"`, "needs 12"}},
		{"shape overflow", file(`{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}`, 8), []string{`tensor "a"`, "overflows"}},
		{"bytes overflow", file(`{"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]}}`, 8), []string{`tensor "a"`, "overflows"}},
		{"offset overflow", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,99999999999999999999]}}`, 8), []string{"non-negative 64-bit"}},
		{"F4 odd count", file(`{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}`, 2), []string{`tensor "a"`, "whole bytes"}},
		{"trailing data", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 8), []string{"ends at byte 4 of a 8-byte", "trailing"}},
		{"truncated data", file(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, 8), []string{`tensor "a"`, "truncated"}},
		{"no tensors but data", file(`{}`, 4), []string{"trailing"}},
		{"metadata not strings", file(`{"__metadata__":{"a":1}}`, 0), []string{"__metadata__", "must be a string"}},
		{"metadata nested", file(`{"__metadata__":{"a":{"b":"c"}}}`, 0), []string{"must be a string"}},
		{"metadata array", file(`{"__metadata__":["a"]}`, 0), []string{"object of strings"}},
		{"metadata dup key", file(`{"__metadata__":{"a":"1","a":"2"}}`, 0), []string{"duplicate key"}},
		{"duplicate metadata", file(`{"__metadata__":{},"__metadata__":{}}`, 0), []string{"duplicate key"}},
		{"entry not object", file(`{"a":[1]}`, 0), []string{`tensor "a"`, "must be an object"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := NewReader("x.safetensors", bytes.NewReader(c.file), int64(len(c.file)))
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
				t.Fatalf("accepted; tensors %+v", f.Tensors())
			}
			msg := errorAndHint(err)
			if !strings.HasPrefix(msg, "x.safetensors: ") {
				t.Errorf("error does not start with the file name: %s", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
		})
	}
}

func TestMetadataPreservedAndOrder(t *testing.T) {
	b := file(`{"z":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"__metadata__":{"format":"pt","Format":"x"},"a":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`, 3)
	f, err := NewReader("m.safetensors", bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	md := f.Metadata()
	if len(md) != 2 || md["format"] != "pt" || md["Format"] != "x" {
		t.Errorf("metadata = %v", md)
	}
	ts := f.Tensors()
	if len(ts) != 2 || ts[0].Name != "z" || ts[1].Name != "a" {
		t.Errorf("order = %v, want offset order z, a", ts)
	}
	if _, ok := f.Lookup("A"); ok {
		t.Error("lookup is not case-sensitive")
	}
	if _, err := f.ReadRaw("A"); err == nil || !strings.Contains(err.Error(), `tensor "A"`) {
		t.Errorf("ReadRaw of a missing tensor: %v", err)
	}
	if _, err := f.ReadFloat32("z"); err == nil || !strings.Contains(err.Error(), `tensor "z"`) || !strings.Contains(err.Error(), "U8") {
		t.Errorf("ReadFloat32 of U8: %v", err)
	}
}

// A file that shrinks after Open must give an error naming the tensor.
func TestShortRead(t *testing.T) {
	b := file(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, 16)
	f, err := NewReader("s.safetensors", bytes.NewReader(b[:len(b)-4]), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFloat32("a"); err == nil || !strings.Contains(err.Error(), `tensor "a"`) {
		t.Errorf("err = %v", err)
	}
	if _, err := f.ReadRaw("a"); err == nil || !strings.Contains(err.Error(), "short read") {
		t.Errorf("err = %v", err)
	}
}

// errorAndHint is the message a user sees: the error and its hint.
func errorAndHint(err error) string {
	var h interface{ Hint() string }
	if errors.As(err, &h) && h.Hint() != "" {
		return err.Error() + "; hint: " + h.Hint()
	}
	return err.Error()
}
