package torchload

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/bits"
	"os"
	"strconv"
	"strings"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"
	"github.com/seedlm/seedlm/internal/safetensors"
)

// Error is the error type of this package: it names the file and, where
// one is involved, the tensor, and may carry advice on what to do (Hint).
type Error struct {
	File   string
	Tensor string // "" when the problem is not about one tensor
	Msg    string
	Advice string // what to do about it, for Hint
	Err    error  // underlying cause (I/O, pickle), if any
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Tensor != "" {
		fmt.Fprintf(&b, ": tensor %q", e.Tensor)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Hint is the advice on what to do ("" if none).
func (e *Error) Hint() string { return e.Advice }

// maxPickle caps data.pkl (and each legacy pickle): a state dict's pickle
// holds only names, shapes and storage keys, a few hundred bytes per tensor.
const maxPickle = 64 << 20

// Tensor is a tensor's name, safetensors dtype name and shape.
type Tensor = safetensors.TensorHeader

// storage is one serialized storage: numel elements of typ, little- or
// big-endian, starting at file offset off.
type storage struct {
	key   string
	typ   storageType
	numel int64
	off   int64
	big   bool
	// legacy files: offsets are known only after the whole pickle is read;
	// a legacy storage view points into root at viewOff elements.
	root    *storage
	viewOff int64
	placed  bool
}

// File is an open torch.save checkpoint. Storage bytes are read in place,
// one tensor at a time; a File is safe for concurrent reads.
type File struct {
	path   string
	r      io.ReaderAt
	closer io.Closer
	size   int64
	legacy bool
	ts     []Tensor
	refs   []*tensorRef
	index  map[string]int
	// same[i] is the first tensor that is the same view of the same
	// storage as tensor i (i itself if none came before).
	same []int
	// extra: dotted paths of entries that are not tensors.
	extra []string
}

// Open opens a torch.save file (zip format, or the legacy pre-1.6 format).
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot open", Err: err}
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, &Error{File: path, Msg: "not a regular file", Err: err}
	}
	tf, err := NewReader(path, f, st.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	tf.closer = f
	return tf, nil
}

// legacyMagic is how a legacy file begins: PROTO 2, LONG1 of the magic number.
var legacyMagic = []byte{0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19}

// NewReader reads a checkpoint of the given size through r; name is used in
// messages. Close does not close r.
func NewReader(name string, r io.ReaderAt, size int64) (f *File, err error) {
	// gopickle and archive/zip are fed hostile bytes: any panic is a bad file.
	defer func() {
		if p := recover(); p != nil {
			f, err = nil, &Error{File: name, Msg: fmt.Sprintf("malformed checkpoint (parser panic: %v)", p),
				Advice: "the file is corrupt or not a torch.save checkpoint"}
		}
	}()
	f = &File{path: name, r: r, size: size, index: map[string]int{}}
	head := make([]byte, 512)
	nh, _ := r.ReadAt(head, 0)
	head = head[:nh]
	var root any
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")) || bytes.HasPrefix(head, []byte("PK\x05\x06")):
		root, err = f.loadZip()
	case bytes.HasPrefix(head, legacyMagic):
		f.legacy = true
		root, err = f.loadLegacy()
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return nil, &Error{File: name, Msg: "tar-format checkpoint (PyTorch before 0.4) is not supported",
			Advice: "load it with an old PyTorch and re-save it with torch.save(model.state_dict(), path)"}
	default:
		return nil, &Error{File: name, Msg: "not a torch.save checkpoint (neither a zip archive nor a legacy pickle)",
			Advice: "seedlm reads .safetensors, sharded safetensors, and torch.save .bin/.pt/.pth files"}
	}
	if err != nil {
		return nil, err
	}
	if err := f.collect(root); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *File) fail(tensor, msg, hint string, err error) error {
	return &Error{File: f.path, Tensor: tensor, Msg: msg, Advice: hint, Err: err}
}

// unpickle scans data, then runs gopickle over it with the allow-list.
func (f *File) unpickle(what string, data []byte, persistent func(any) (any, error)) (res any, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, f.fail("", fmt.Sprintf("malformed pickle %s (parser panic: %v)", what, p),
				"the file is corrupt", nil)
		}
	}()
	if _, err := scanPickle(bufio.NewReader(bytes.NewReader(data)), int64(len(data)), maxCostDflt); err != nil {
		return nil, f.fail("", "refusing pickle "+what, "the file is corrupt or hostile", err)
	}
	u := pickle.NewUnpickler(bytes.NewReader(data))
	u.FindClass = findClass
	u.PersistentLoad = persistent
	res, err = u.Load()
	if err != nil {
		var ge *globalError
		if errors.As(err, &ge) {
			return nil, &Error{File: f.path, Msg: fmt.Sprintf("pickle references global %s, which is not on the allow-list", short(ge.full)), Advice: ge.hint}
		}
		return nil, f.fail("", "cannot unpickle "+what, "the file is corrupt or not a state dict", shortErr(err))
	}
	return res, nil
}

// short quotes a value taken from the file for a message, cut to a sane
// length (hostile names can be megabytes long).
func short(v any) string {
	var s string
	switch v.(type) {
	case string, int, bool, float64, nil, *big.Int:
		s = fmt.Sprint(v)
	default: // containers could print megabytes
		s = fmt.Sprintf("<%T>", v)
	}
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return strconv.Quote(s)
}

// shortErr trims gopickle messages, which may print whole objects.
func shortErr(err error) error {
	s := err.Error()
	if len(s) > 300 {
		return errors.New(s[:300] + "…")
	}
	return err
}

func (f *File) loadZip() (any, error) {
	zr, err := zip.NewReader(f.r, f.size)
	if err != nil {
		return nil, f.fail("", "not a readable zip archive", "the checkpoint is truncated or corrupt; save it again", err)
	}
	entries := make(map[string]*zip.File, len(zr.File))
	var pkl []string
	for _, e := range zr.File {
		if _, dup := entries[e.Name]; dup {
			return nil, f.fail("", fmt.Sprintf("zip entry %s appears twice", short(e.Name)), "the archive is corrupt", nil)
		}
		entries[e.Name] = e
		if i := strings.IndexByte(e.Name, '/'); i > 0 && e.Name[i+1:] == "data.pkl" {
			pkl = append(pkl, e.Name)
		}
	}
	if len(pkl) != 1 {
		return nil, f.fail("", fmt.Sprintf("found %d <archive>/data.pkl entries, want 1", len(pkl)),
			"this zip is not a torch.save checkpoint", nil)
	}
	prefix := strings.TrimSuffix(pkl[0], "data.pkl")
	if _, ok := entries[prefix+"constants.pkl"]; ok {
		return nil, f.fail("", "this is a TorchScript archive, not a torch.save state dict",
			"in Python: torch.save(torch.jit.load(path).state_dict(), 'model.pt')", nil)
	}
	bigEndian := false
	if bo, ok := entries[prefix+"byteorder"]; ok {
		b, err := readSmall(bo, 16)
		if err != nil {
			return nil, f.fail("", "cannot read the byteorder record", "", err)
		}
		switch string(b) {
		case "little":
		case "big":
			bigEndian = true
		default:
			return nil, f.fail("", fmt.Sprintf("byteorder record is %q, want \"little\" or \"big\"", b), "the archive is corrupt", nil)
		}
	}
	pe := entries[pkl[0]]
	if pe.UncompressedSize64 > maxPickle {
		return nil, f.fail("", fmt.Sprintf("data.pkl is %d bytes, over the %d-byte limit", pe.UncompressedSize64, maxPickle),
			"a state dict's pickle is small; this file holds something else", nil)
	}
	data, err := readSmall(pe, maxPickle)
	if err != nil {
		return nil, f.fail("", "cannot read data.pkl", "the archive is corrupt", err)
	}
	storages := map[string]*storage{}
	persistent := func(pid any) (any, error) {
		t, ok := pid.(*types.Tuple)
		if !ok || t.Len() != 5 {
			return nil, fmt.Errorf("persistent id %T is not a 5-tuple ('storage', type, key, location, numel)", pid)
		}
		if s, _ := t.Get(0).(string); s != "storage" {
			return nil, fmt.Errorf("persistent id kind %s is not 'storage'", short(t.Get(0)))
		}
		typ, ok := t.Get(1).(storageType)
		if !ok {
			return nil, fmt.Errorf("persistent id storage type is %T", t.Get(1))
		}
		key, ok := t.Get(2).(string)
		numel, ok2 := toInt64(t.Get(4))
		if !ok || !ok2 || numel < 0 {
			return nil, fmt.Errorf("persistent id key %s / numel %s malformed", short(t.Get(2)), short(t.Get(4)))
		}
		if s, seen := storages[key]; seen {
			if s.typ != typ || s.numel != numel {
				return nil, fmt.Errorf("storage %s is referenced as %s[%d] and as %s[%d]", short(key), s.typ.name, s.numel, typ.name, numel)
			}
			return s, nil
		}
		e, ok := entries[prefix+"data/"+key]
		if !ok {
			return nil, fmt.Errorf("storage %s has no zip entry <archive>/data/<key>", short(key))
		}
		hi, nbytes := bits.Mul64(uint64(numel), uint64(typ.esize))
		if hi != 0 || nbytes != e.UncompressedSize64 {
			return nil, fmt.Errorf("storage %s declares %d %s elements but its zip entry holds %d bytes", short(key), numel, typ.name, e.UncompressedSize64)
		}
		if e.Method != zip.Store || e.CompressedSize64 != e.UncompressedSize64 {
			return nil, fmt.Errorf("storage %s is compressed (zip method %d); PyTorch stores storages uncompressed, re-save the file with torch.save", short(key), e.Method)
		}
		off, err := e.DataOffset()
		if err != nil {
			return nil, fmt.Errorf("storage %s: %v", short(key), err)
		}
		if off < 0 || off > f.size || int64(nbytes) > f.size-off {
			return nil, fmt.Errorf("storage %s runs past the end of the file", short(key))
		}
		s := &storage{key: key, typ: typ, numel: numel, off: off, big: bigEndian, placed: true}
		storages[key] = s
		return s, nil
	}
	return f.unpickle("data.pkl", data, persistent)
}

// readSmall reads a whole zip entry of at most max bytes (decompressing and
// checking its CRC), whatever size its header claims.
func readSmall(e *zip.File, max int64) ([]byte, error) {
	rc, err := e.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("entry %s is larger than %d bytes", short(e.Name), max)
	}
	return b, nil
}

// loadLegacy reads the pre-1.6 format: pickles for magic number, protocol
// version and system info, the main pickle, the list of storage keys, then
// each storage as an 8-byte element count followed by its bytes.
func (f *File) loadLegacy() (any, error) {
	br := bufio.NewReaderSize(io.NewSectionReader(f.r, 0, f.size), 64<<10)
	var pos int64
	next := func(what string, persistent func(any) (any, error)) (any, error) {
		n, err := scanPickle(br, min(f.size-pos, maxPickle), maxCostDflt)
		if err != nil {
			return nil, f.fail("", "refusing legacy pickle "+what, "the file is corrupt or hostile", err)
		}
		data := make([]byte, n)
		if _, err := f.r.ReadAt(data, pos); err != nil {
			return nil, f.fail("", "reading legacy pickle "+what, "", err)
		}
		pos += n
		return f.unpickle(what, data, persistent)
	}
	magic, err := next("magic number", nil)
	if err != nil {
		return nil, err
	}
	if m, ok := magic.(*big.Int); !ok || m.Text(16) != "1950a86a20f9469cfc6c" {
		return nil, f.fail("", "bad legacy magic number", "not a torch.save file", nil)
	}
	proto, err := next("protocol version", nil)
	if err != nil {
		return nil, err
	}
	if p, ok := proto.(int); !ok || p != 1001 {
		return nil, f.fail("", fmt.Sprintf("legacy protocol version %s, want 1001", short(proto)), "re-save the file with a recent PyTorch", nil)
	}
	sysInfo, err := next("system info", nil)
	if err != nil {
		return nil, err
	}
	bigEndian := false
	if d, ok := sysInfo.(*types.Dict); ok {
		if le, ok := d.Get("little_endian"); ok {
			if b, ok := le.(bool); ok && !b {
				bigEndian = true
			}
		}
	}
	storages := map[string]*storage{}
	var views []*storage
	persistent := func(pid any) (any, error) {
		t, ok := pid.(*types.Tuple)
		if !ok || t.Len() == 0 {
			return nil, fmt.Errorf("persistent id %T is not a tuple", pid)
		}
		if kind, _ := t.Get(0).(string); kind != "storage" {
			return nil, fmt.Errorf("persistent id kind %s: only tensors can be read, not pickled modules (save model.state_dict() instead)", short(t.Get(0)))
		}
		if t.Len() != 6 {
			return nil, fmt.Errorf("legacy storage id has %d fields, want 6", t.Len())
		}
		typ, ok := t.Get(1).(storageType)
		key, ok2 := t.Get(2).(string)
		numel, ok3 := toInt64(t.Get(4))
		if !ok || !ok2 || !ok3 || numel < 0 {
			return nil, fmt.Errorf("legacy storage id malformed")
		}
		root, seen := storages[key]
		if !seen {
			root = &storage{key: key, typ: typ, numel: numel, big: bigEndian}
			storages[key] = root
		} else if root.typ != typ || root.numel != numel {
			return nil, fmt.Errorf("storage %s is referenced with two different types or sizes", short(key))
		}
		if vm := t.Get(5); vm != nil {
			v, ok := vm.(*types.Tuple)
			if !ok || v.Len() != 3 {
				return nil, fmt.Errorf("storage %s: malformed view metadata", short(key))
			}
			vOff, ok := toInt64(v.Get(1))
			vSize, ok2 := toInt64(v.Get(2))
			if !ok || !ok2 || vOff < 0 || vSize < 0 || vOff > numel || vSize > numel-vOff {
				return nil, fmt.Errorf("storage %s: view [%s, +%s) outside %d elements", short(key), short(v.Get(1)), short(v.Get(2)), numel)
			}
			view := &storage{key: key, typ: typ, numel: vSize, big: bigEndian, root: root, viewOff: vOff}
			views = append(views, view)
			return view, nil
		}
		return root, nil
	}
	root, err := next("state dict", persistent)
	if err != nil {
		return nil, err
	}
	keysObj, err := next("storage keys", nil)
	if err != nil {
		return nil, err
	}
	keys, ok := keysObj.(*types.List)
	if !ok {
		return nil, f.fail("", "legacy storage key list is missing", "the file is truncated or corrupt", nil)
	}
	for _, k := range *keys {
		key, _ := k.(string)
		s, ok := storages[key]
		if !ok || s.placed {
			return nil, f.fail("", fmt.Sprintf("legacy storage key %s is unknown or repeated", short(k)), "the file is corrupt", nil)
		}
		var nb [8]byte
		if _, err := f.r.ReadAt(nb[:], pos); err != nil {
			return nil, f.fail("", fmt.Sprintf("storage %s: reading its size", short(key)), "the file is truncated", err)
		}
		n := binary.LittleEndian.Uint64(nb[:])
		if bigEndian {
			n = binary.BigEndian.Uint64(nb[:])
		}
		if n != uint64(s.numel) {
			return nil, f.fail("", fmt.Sprintf("storage %s holds %d elements, the pickle says %d", short(key), n, s.numel), "the file is corrupt", nil)
		}
		nbytes := s.numel * s.typ.esize // numel <= file size checked below
		if s.numel > f.size || nbytes > f.size-pos-8 {
			return nil, f.fail("", fmt.Sprintf("storage %s runs past the end of the file", short(key)), "the file is truncated", nil)
		}
		s.off, s.placed = pos+8, true
		pos += 8 + nbytes
	}
	for key, s := range storages {
		if !s.placed {
			return nil, f.fail("", fmt.Sprintf("storage %s is used but never stored", short(key)), "the file is truncated or corrupt", nil)
		}
	}
	for _, v := range views {
		v.off, v.placed = v.root.off+v.viewOff*v.typ.esize, true
	}
	return root, nil
}
