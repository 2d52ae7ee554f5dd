package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/seedlm/seedlm/internal/dtype"
	"io"
	"sort"
	"strconv"
	"unicode/utf8"
)

// MaxHeaderSize caps the JSON header, as the reference implementation does:
// a hostile length field must not make us allocate more.
const MaxHeaderSize = 100_000_000

// TensorHeader is a tensor's name, dtype and shape, without its data.
type TensorHeader struct {
	Name  string
	DType string
	Shape []int64
}

// Tensor is one header entry; Begin and End are byte offsets into the data
// section (which starts at DataStart in the file).
type Tensor struct {
	TensorHeader
	Begin, End int64
}

// Header is a parsed and validated safetensors header.
type Header struct {
	// Tensors in data order (sorted by offset), which is "file order".
	Tensors []Tensor
	// Metadata is __metadata__, nil when absent.
	Metadata map[string]string
	// DataStart is the file offset of the data section (8 + header length).
	DataStart int64
}

// ReadHeader reads and validates the header of a safetensors file of the
// given size through r. It reads at most MaxHeaderSize+8 bytes, and never
// more than size.
func ReadHeader(file string, r io.ReaderAt, size int64) (*Header, error) {
	fail := func(msg, hint string, err error) error {
		return &Error{File: file, Msg: msg, Advice: hint, Err: err}
	}
	if size < 8 {
		return nil, fail(fmt.Sprintf("file is %d bytes, shorter than the 8-byte header length", size),
			"the file is truncated or not a safetensors file", nil)
	}
	var lenBuf [8]byte
	if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fail("reading header length", "", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxHeaderSize {
		return nil, fail(fmt.Sprintf("header length %d exceeds the %d-byte limit", n, MaxHeaderSize),
			"the file is corrupt or not a safetensors file", nil)
	}
	if int64(n) > size-8 {
		return nil, fail(fmt.Sprintf("header length %d runs past the end of the %d-byte file", n, size),
			"the file is truncated; download it again", nil)
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, 8); err != nil {
		return nil, fail("reading header", "", err)
	}
	return ParseHeader(file, buf, size-8-int64(n))
}

// ParseHeader parses the JSON header bytes hdr of a file whose data section
// is dataLen bytes long, and validates every tensor against it.
//
// Stricter than encoding/json: keys are matched case-sensitively, duplicate
// keys are rejected, unknown tensor fields are rejected, numbers must be
// non-negative integers.
func ParseHeader(file string, hdr []byte, dataLen int64) (*Header, error) {
	h, err := parseJSON(file, hdr)
	if err != nil {
		return nil, err
	}
	h.DataStart = 8 + int64(len(hdr))
	if err := validate(file, h.Tensors, dataLen); err != nil {
		return nil, err
	}
	return h, nil
}

func parseJSON(file string, hdr []byte) (*Header, error) {
	bad := func(tensor, msg string) error {
		return &Error{File: file, Tensor: tensor, Msg: "invalid header: " + msg,
			Advice: "the header JSON is malformed; re-export the model with the safetensors library"}
	}
	// Go's decoder would silently replace invalid UTF-8; the reference rejects it.
	if !utf8.Valid(hdr) {
		return nil, bad("", "not valid UTF-8")
	}
	d := json.NewDecoder(bytes.NewReader(hdr))
	d.UseNumber()
	if err := expectDelim(d, '{'); err != nil {
		return nil, bad("", "not a JSON object: "+err.Error())
	}
	h := &Header{}
	seen := map[string]bool{}
	for d.More() {
		key, err := stringToken(d)
		if err != nil {
			return nil, bad("", err.Error())
		}
		if seen[key] {
			return nil, bad(key, "duplicate key")
		}
		seen[key] = true
		if key == "__metadata__" {
			md, err := readStringMap(d)
			if err != nil {
				return nil, bad("", "__metadata__: "+err.Error())
			}
			h.Metadata = md
			continue
		}
		t, err := readTensorInfo(d)
		if err != nil {
			return nil, bad(key, err.Error())
		}
		t.Name = key
		h.Tensors = append(h.Tensors, t)
	}
	if err := expectDelim(d, '}'); err != nil {
		return nil, bad("", err.Error())
	}
	// Only whitespace (the writer's padding) may follow the object.
	if tok, err := d.Token(); err != io.EOF {
		if err != nil {
			return nil, bad("", "after the object: "+err.Error())
		}
		return nil, bad("", fmt.Sprintf("unexpected %v after the object", tok))
	}
	return h, nil
}

func expectDelim(d *json.Decoder, want json.Delim) error {
	tok, err := d.Token()
	if err != nil {
		return err
	}
	if dl, ok := tok.(json.Delim); !ok || dl != want {
		return fmt.Errorf("expected %q, found %v", string(want), tok)
	}
	return nil
}

func stringToken(d *json.Decoder) (string, error) {
	tok, err := d.Token()
	if err != nil {
		return "", err
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("expected a string, found %v", tok)
	}
	return s, nil
}

// readStringMap reads {"k": "v", ...} or null (treated as absent).
func readStringMap(d *json.Decoder) (map[string]string, error) {
	tok, err := d.Token()
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, nil
	}
	if dl, ok := tok.(json.Delim); !ok || dl != '{' {
		return nil, fmt.Errorf("must be an object of strings, found %v", tok)
	}
	m := map[string]string{}
	for d.More() {
		k, err := stringToken(d)
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("duplicate key %s", quote(k))
		}
		v, err := d.Token()
		if err != nil {
			return nil, err
		}
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("value of %s must be a string, found %v", quote(k), v)
		}
		m[k] = s
	}
	return m, expectDelim(d, '}')
}

func readTensorInfo(d *json.Decoder) (Tensor, error) {
	var t Tensor
	if err := expectDelim(d, '{'); err != nil {
		return t, fmt.Errorf("entry must be an object: %v", err)
	}
	var haveDType, haveShape, haveOffsets bool
	for d.More() {
		k, err := stringToken(d)
		if err != nil {
			return t, err
		}
		switch k {
		case "dtype":
			if haveDType {
				return t, errors.New("duplicate key \"dtype\"")
			}
			haveDType = true
			if t.DType, err = stringToken(d); err != nil {
				return t, fmt.Errorf("dtype: %v", err)
			}
			if _, ok := dtype.Bits(t.DType); !ok {
				return t, fmt.Errorf("unknown dtype %s (known: %v)", quote(t.DType), dtype.Names())
			}
		case "shape":
			if haveShape {
				return t, errors.New("duplicate key \"shape\"")
			}
			haveShape = true
			if t.Shape, err = readInts(d, -1); err != nil {
				return t, fmt.Errorf("shape: %v", err)
			}
		case "data_offsets":
			if haveOffsets {
				return t, errors.New("duplicate key \"data_offsets\"")
			}
			haveOffsets = true
			offs, err := readInts(d, 2)
			if err != nil {
				return t, fmt.Errorf("data_offsets: %v", err)
			}
			t.Begin, t.End = offs[0], offs[1]
		default:
			return t, fmt.Errorf("unknown field %s (fields are case-sensitive: dtype, shape, data_offsets)", quote(k))
		}
	}
	if err := expectDelim(d, '}'); err != nil {
		return t, err
	}
	switch {
	case !haveDType:
		return t, errors.New("missing \"dtype\"")
	case !haveShape:
		return t, errors.New("missing \"shape\"")
	case !haveOffsets:
		return t, errors.New("missing \"data_offsets\"")
	}
	if t.Shape == nil {
		t.Shape = []int64{}
	}
	return t, nil
}

// readInts reads an array of non-negative integers; want >= 0 fixes its length.
func readInts(d *json.Decoder, want int) ([]int64, error) {
	if err := expectDelim(d, '['); err != nil {
		return nil, err
	}
	var out []int64
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, fmt.Errorf("expected an integer, found %v", tok)
		}
		v, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%s is not a non-negative 64-bit integer", num)
		}
		if want >= 0 && len(out) == want {
			return nil, fmt.Errorf("more than %d values", want)
		}
		out = append(out, v)
	}
	if err := expectDelim(d, ']'); err != nil {
		return nil, err
	}
	if want >= 0 && len(out) != want {
		return nil, fmt.Errorf("has %d values, want %d", len(out), want)
	}
	return out, nil
}

// validate applies the reference rules: sorted by offsets, each tensor starts
// where the previous ended, its length is exactly numel*bits/8, and the last
// one ends at the end of the file.
func validate(file string, ts []Tensor, dataLen int64) error {
	sort.SliceStable(ts, func(i, j int) bool {
		if ts[i].Begin != ts[j].Begin {
			return ts[i].Begin < ts[j].Begin
		}
		return ts[i].End < ts[j].End
	})
	var pos int64
	for _, t := range ts {
		fail := func(msg, hint string) error {
			return &Error{File: file, Tensor: t.Name, Msg: msg, Advice: hint}
		}
		if t.End < t.Begin {
			return fail(fmt.Sprintf("data_offsets [%d, %d] end before they begin", t.Begin, t.End),
				"the header is corrupt")
		}
		if t.Begin != pos {
			what := "leaves a gap after"
			if t.Begin < pos {
				what = "overlaps"
			}
			return fail(fmt.Sprintf("data_offsets [%d, %d] start at %d, which %s the previous tensor's end %d",
				t.Begin, t.End, t.Begin, what, pos), "the header is corrupt; re-export the model")
		}
		size, err := dtype.ByteLen(t.DType, t.Shape)
		if err != nil {
			return fail(err.Error(), "the header is corrupt")
		}
		if t.End-t.Begin != size {
			return fail(fmt.Sprintf("data_offsets [%d, %d] hold %d bytes, but %s %s needs %d",
				t.Begin, t.End, t.End-t.Begin, t.DType, dtype.ShapeString(t.Shape), size), "the header is corrupt")
		}
		pos = t.End
	}
	if pos != dataLen {
		msg := fmt.Sprintf("tensor data ends at byte %d of a %d-byte data section", pos, dataLen)
		hint := "the file has trailing bytes; it was not written by a safetensors writer"
		if pos > dataLen {
			hint = "the file is truncated; download it again"
		}
		name := ""
		if len(ts) > 0 {
			name = ts[len(ts)-1].Name
		}
		return &Error{File: file, Tensor: name, Msg: msg, Advice: hint}
	}
	return nil
}
