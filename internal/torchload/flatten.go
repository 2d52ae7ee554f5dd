package torchload

import (
	"fmt"
	"github.com/seedlm/seedlm/internal/dtype"
	"math"
	"math/big"
	"math/bits"
	"strings"

	"github.com/nlpodyssey/gopickle/types"
)

// maxDepth bounds the nesting walked below the root; deeper structures are
// refused rather than risking an unbounded recursion.
const maxDepth = 32

// maxVisits bounds the objects walked while naming tensors.
const maxVisits = 1 << 22

// wrapperKeys are the top-level keys that training scripts wrap a state dict
// in; when every tensor sits under the same one, it is dropped from names.
var wrapperKeys = map[string]bool{"state_dict": true, "model": true, "model_state_dict": true, "module": true, "net": true}

type leaf struct {
	path []string
	ref  *tensorRef
}

// collect flattens the unpickled root into named tensors (dict keys joined
// with dots, list items by index), in pickle order.
func (f *File) collect(root any) error {
	var leaves []leaf
	var walk func(v any, path []string, depth int) error
	visits := 0
	walk = func(v any, path []string, depth int) error {
		// Shared containers are walked once per reference (names differ), so
		// bound the total work: a pickle of nested shared lists could
		// otherwise expand exponentially.
		if visits++; visits > maxVisits {
			return f.fail("", fmt.Sprintf("more than %d objects to walk", maxVisits), "the file is not a plain state dict", nil)
		}
		if depth > maxDepth {
			return f.fail(strings.Join(path, "."), fmt.Sprintf("nested more than %d levels deep", maxDepth), "the file is not a state dict", nil)
		}
		child := func(k string) []string {
			p := make([]string, len(path)+1)
			copy(p, path)
			p[len(path)] = k
			return p
		}
		switch x := v.(type) {
		case *tensorRef:
			if len(path) == 0 {
				path = []string{"tensor"} // torch.save(one_tensor)
			}
			leaves = append(leaves, leaf{path, x})
		case *types.OrderedDict:
			for e := x.List.Front(); e != nil; e = e.Next() {
				ent := e.Value.(*types.OrderedDictEntry)
				k, err := f.keyString(ent.Key, path)
				if err != nil {
					return err
				}
				if err := walk(ent.Value, child(k), depth+1); err != nil {
					return err
				}
			}
			for _, pv := range x.PyDict { // state such as _metadata: checked, not named
				if err := f.checkInert(pv, path, depth+1, map[any]bool{}); err != nil {
					return err
				}
			}
		case *types.Dict:
			for _, ent := range *x {
				k, err := f.keyString(ent.Key, path)
				if err != nil {
					return err
				}
				if err := walk(ent.Value, child(k), depth+1); err != nil {
					return err
				}
			}
		case *types.List:
			for i, it := range *x {
				if err := walk(it, child(fmt.Sprint(i)), depth+1); err != nil {
					return err
				}
			}
		case *types.Tuple:
			for i, it := range *x {
				if err := walk(it, child(fmt.Sprint(i)), depth+1); err != nil {
					return err
				}
			}
		default:
			if len(path) > 0 {
				f.extra = append(f.extra, strings.Join(path, "."))
			}
			return f.checkInert(v, path, depth, map[any]bool{})
		}
		return nil
	}
	if err := walk(root, nil, 0); err != nil {
		return err
	}
	if len(leaves) > 0 && len(leaves[0].path) > 1 && wrapperKeys[leaves[0].path[0]] {
		w := leaves[0].path[0]
		all := true
		for _, l := range leaves {
			if len(l.path) < 2 || l.path[0] != w {
				all = false
				break
			}
		}
		if all {
			for i := range leaves {
				leaves[i].path = leaves[i].path[1:]
			}
		}
	}
	views := map[string]int{}
	for _, l := range leaves {
		name := strings.Join(l.path, ".")
		if _, dup := f.index[name]; dup {
			return f.fail(name, "two tensors flatten to this name", "rename the nested keys so dotted names are unique", nil)
		}
		if err := f.checkView(name, l.ref); err != nil {
			return err
		}
		f.index[name] = len(f.ts)
		key := l.ref.viewKey()
		if j, ok := views[key]; ok && l.ref.numel() > 0 {
			f.same = append(f.same, j)
		} else {
			views[key] = len(f.ts)
			f.same = append(f.same, len(f.ts))
		}
		f.ts = append(f.ts, Tensor{Name: name, DType: l.ref.st.typ.dtype, Shape: l.ref.shape})
		f.refs = append(f.refs, l.ref)
	}
	return nil
}

// viewKey identifies the bytes a view reads: its root storage, element
// offset in it, dtype, shape and strides.
func (t *tensorRef) viewKey() string {
	st, off := t.st, t.offset
	if st.root != nil { // a legacy storage view
		st, off = st.root, off+st.viewOff
	}
	return fmt.Sprintf("%q %s %d %v %v", st.key, st.typ.dtype, off, t.shape, t.stride)
}

// checkInert accepts plain values (numbers, strings, ...) that are not
// tensors, and refuses the objects gopickle builds for globals it handles
// itself, which bypass the allow-list.
func (f *File) checkInert(v any, path []string, depth int, seen map[any]bool) error {
	switch x := v.(type) {
	case *types.ObjectClass:
		return f.fail("", `pickle references global "__builtin__.object", which is not on the allow-list`, "save only the state_dict()", nil)
	case *types.Reconstructor:
		return f.fail("", `pickle references global "copy_reg._reconstructor", which is not on the allow-list`, "save only the state_dict()", nil)
	case *types.OrderedDict, *types.Dict, *types.List, *types.Tuple:
		// A container outside the tensor tree: walk it only for the check.
		if depth > maxDepth || seen[x] {
			return nil
		}
		seen[x] = true
		var items []any
		switch c := x.(type) {
		case *types.OrderedDict:
			for e := c.List.Front(); e != nil; e = e.Next() {
				ent := e.Value.(*types.OrderedDictEntry)
				items = append(items, ent.Key, ent.Value)
			}
		case *types.Dict:
			for _, e := range *c {
				items = append(items, e.Key, e.Value)
			}
		case *types.List:
			items = *c
		case *types.Tuple:
			items = *c
		}
		for _, it := range items {
			if _, isT := it.(*tensorRef); isT {
				continue
			}
			if err := f.checkInert(it, path, depth+1, seen); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *File) keyString(k any, path []string) (string, error) {
	switch x := k.(type) {
	case string:
		return x, nil
	case int:
		return fmt.Sprint(x), nil
	case *big.Int:
		return x.String(), nil
	case bool:
		return fmt.Sprint(x), nil
	}
	return "", f.fail(strings.Join(path, "."), fmt.Sprintf("dict key of type %T cannot be part of a tensor name", k), "keys must be strings or integers", nil)
}

// checkView validates a tensor view against its storage before anything is
// read: dimensions and strides non-negative, every element inside the
// storage, and the tensor no larger than the whole file (a broadcast view
// could otherwise claim terabytes).
func (f *File) checkView(name string, t *tensorRef) error {
	bad := func(msg string) error {
		return f.fail(name, msg, "the checkpoint is corrupt", nil)
	}
	n := uint64(1)
	for i, d := range t.shape {
		if d < 0 || t.stride[i] < 0 {
			return bad(fmt.Sprintf("size %s / stride %s has a negative entry", dtype.ShapeString(t.shape), dtype.ShapeString(t.stride)))
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return bad(fmt.Sprintf("size %s overflows", dtype.ShapeString(t.shape)))
		}
		n = lo
	}
	hi, nbytes := bits.Mul64(n, uint64(t.st.typ.esize))
	if hi != 0 || nbytes > uint64(f.size) {
		return bad(fmt.Sprintf("size %s of %s is %d elements, more bytes than the whole %d-byte file", dtype.ShapeString(t.shape), t.st.typ.dtype, n, f.size))
	}
	if n == 0 {
		return nil
	}
	last := uint64(t.offset)
	for i, d := range t.shape {
		hi, step := bits.Mul64(uint64(d-1), uint64(t.stride[i]))
		var carry uint64
		last, carry = bits.Add64(last, step, 0)
		if hi != 0 || carry != 0 || last > math.MaxInt64 {
			return bad("view offsets overflow")
		}
	}
	if last >= uint64(t.st.numel) {
		return bad(fmt.Sprintf("view (offset %d, size %s, stride %s) reaches element %d of a %d-element storage %q",
			t.offset, dtype.ShapeString(t.shape), dtype.ShapeString(t.stride), last, t.st.numel, t.st.key))
	}
	return nil
}
