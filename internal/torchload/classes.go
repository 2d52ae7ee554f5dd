package torchload

import (
	"fmt"
	"math/big"

	"github.com/nlpodyssey/gopickle/types"
)

// The allow-list: every global a torch.save state dict may reference maps to
// one of these Go values; any other global is an error naming it. None of
// them implements PyNewable, so gopickle's built-in object/_reconstructor
// shims cannot instantiate them either.

// storageType is a typed storage class (torch.FloatStorage, ...).
type storageType struct {
	name  string // e.g. "FloatStorage"
	dtype string // safetensors dtype name
	esize int64
}

var storageTypes = map[string]storageType{}

func init() {
	for _, s := range []storageType{
		{"DoubleStorage", "F64", 8}, {"FloatStorage", "F32", 4}, {"HalfStorage", "F16", 2},
		{"BFloat16Storage", "BF16", 2}, {"LongStorage", "I64", 8}, {"IntStorage", "I32", 4},
		{"ShortStorage", "I16", 2}, {"CharStorage", "I8", 1}, {"ByteStorage", "U8", 1},
		{"BoolStorage", "BOOL", 1}, {"ComplexFloatStorage", "C64", 8},
		{"Float8_e5m2Storage", "F8_E5M2", 1}, {"Float8_e4m3fnStorage", "F8_E4M3", 1},
		{"Float8_e5m2fnuzStorage", "F8_E5M2FNUZ", 1}, {"Float8_e4m3fnuzStorage", "F8_E4M3FNUZ", 1},
		{"Float8_e8m0fnuStorage", "F8_E8M0", 1},
		{"UInt16Storage", "U16", 2}, {"UInt32Storage", "U32", 4}, {"UInt64Storage", "U64", 8},
	} {
		storageTypes[s.name] = s
	}
}

// callable adapts a Go function to gopickle's Callable.
type callable struct {
	name string
	fn   func(args []any) (any, error)
}

func (c *callable) Call(args ...any) (any, error) { return c.fn(args) }

// tensorClass stands for torch.Tensor / torch.nn.Parameter when passed as
// the new_type of _rebuild_from_type_v2.
type tensorClass struct{ name string }

// findClass resolves a pickle global against the allow-list.
func findClass(module, name string) (any, error) {
	full := module + "." + name
	if module == "torch" {
		if st, ok := storageTypes[name]; ok {
			return st, nil
		}
	}
	switch full {
	case "torch._utils._rebuild_tensor_v2":
		return &callable{full, rebuildTensorV2}, nil
	case "torch._utils._rebuild_tensor":
		return &callable{full, rebuildTensor}, nil
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		return &callable{full, rebuildParameter}, nil
	case "torch._tensor._rebuild_from_type_v2":
		return &callable{full, rebuildFromType}, nil
	case "torch.Size":
		return &callable{full, makeSize}, nil
	case "builtins.dict", "__builtin__.dict":
		return &callable{full, makeDict}, nil
	case "torch.Tensor", "torch._tensor.Tensor", "torch.nn.parameter.Parameter":
		return &tensorClass{full}, nil
	}
	hint := "only plain state dicts of tensors can be read; in Python, load it with torch.load and save just the state_dict() with torch.save"
	if module == "torch" && len(name) > 7 && name[len(name)-7:] == "Storage" {
		hint = "this storage type has no safetensors equivalent"
	}
	return nil, &globalError{full: full, hint: hint}
}

type globalError struct{ full, hint string }

func (e *globalError) Error() string {
	return fmt.Sprintf("pickle references global %s, which is not on the allow-list", short(e.full))
}

func (e *globalError) Hint() string { return e.hint }

// maxRank bounds dimensions (PyTorch's own limit is far lower in practice).
const maxRank = 64

// tensorRef is a tensor as the pickle describes it: a view into a storage.
type tensorRef struct {
	st     *storage
	offset int64 // in elements
	shape  []int64
	stride []int64
}

func rebuildTensorV2(args []any) (any, error) {
	// (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
	if len(args) != 6 && len(args) != 7 {
		return nil, fmt.Errorf("_rebuild_tensor_v2 takes 6 or 7 arguments, got %d", len(args))
	}
	return rebuildTensor(args[:4])
}

func rebuildTensor(args []any) (any, error) {
	if len(args) != 4 {
		return nil, fmt.Errorf("_rebuild_tensor takes 4 arguments, got %d", len(args))
	}
	st, ok := args[0].(*storage)
	if !ok {
		return nil, fmt.Errorf("tensor storage is %T, not a storage", args[0])
	}
	off, ok := toInt64(args[1])
	if !ok || off < 0 {
		return nil, fmt.Errorf("storage offset %s is not a non-negative integer", short(args[1]))
	}
	shape, err := intTuple(args[2], "size")
	if err != nil {
		return nil, err
	}
	stride, err := intTuple(args[3], "stride")
	if err != nil {
		return nil, err
	}
	if len(shape) > maxRank {
		return nil, fmt.Errorf("tensor has %d dimensions, more than %d", len(shape), maxRank)
	}
	if len(shape) != len(stride) {
		return nil, fmt.Errorf("size has %d dimensions but stride has %d", len(shape), len(stride))
	}
	return &tensorRef{st: st, offset: off, shape: shape, stride: stride}, nil
}

func rebuildParameter(args []any) (any, error) {
	// (data, requires_grad, backward_hooks[, state])
	if len(args) != 3 && len(args) != 4 {
		return nil, fmt.Errorf("_rebuild_parameter takes 3 or 4 arguments, got %d", len(args))
	}
	t, ok := args[0].(*tensorRef)
	if !ok {
		return nil, fmt.Errorf("parameter data is %T, not a tensor", args[0])
	}
	return t, nil
}

func rebuildFromType(args []any) (any, error) {
	// (func, new_type, args, state): a Tensor or Parameter rebuilt by func.
	if len(args) != 4 {
		return nil, fmt.Errorf("_rebuild_from_type_v2 takes 4 arguments, got %d", len(args))
	}
	fn, ok := args[0].(*callable)
	if !ok {
		return nil, fmt.Errorf("_rebuild_from_type_v2: function is %T", args[0])
	}
	if _, ok := args[1].(*tensorClass); !ok {
		return nil, fmt.Errorf("_rebuild_from_type_v2: type is %T, not a tensor class", args[1])
	}
	inner, ok := args[2].(*types.Tuple)
	if !ok {
		return nil, fmt.Errorf("_rebuild_from_type_v2: arguments are %T, not a tuple", args[2])
	}
	out, err := fn.Call(*inner...)
	if err != nil {
		return nil, err
	}
	if _, ok := out.(*tensorRef); !ok {
		return nil, fmt.Errorf("_rebuild_from_type_v2: %s did not build a tensor", fn.name)
	}
	return out, nil
}

func makeSize(args []any) (any, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("torch.Size takes 1 argument, got %d", len(args))
	}
	if _, err := intTuple(args[0], "torch.Size"); err != nil {
		return nil, err
	}
	return args[0], nil
}

func makeDict(args []any) (any, error) {
	d := types.NewDict()
	if len(args) == 0 {
		return d, nil
	}
	if len(args) > 1 {
		return nil, fmt.Errorf("dict() with %d arguments", len(args))
	}
	var items []any
	switch v := args[0].(type) {
	case *types.List:
		items = *v
	case *types.Tuple:
		items = *v
	case *types.Dict:
		for _, e := range *v {
			d.Set(e.Key, e.Value)
		}
		return d, nil
	default:
		return nil, fmt.Errorf("dict() of %T", args[0])
	}
	for _, it := range items {
		p, ok := it.(*types.Tuple)
		if !ok || p.Len() != 2 {
			return nil, fmt.Errorf("dict() item is not a pair")
		}
		d.Set(p.Get(0), p.Get(1))
	}
	return d, nil
}

func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case *big.Int:
		if x.IsInt64() {
			return x.Int64(), true
		}
	case bool: // pickle protocol 0 spells small ints 00/01 as bools
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func intTuple(v any, what string) ([]int64, error) {
	var items []any
	switch t := v.(type) {
	case *types.Tuple:
		items = *t
	case *types.List:
		items = *t
	default:
		return nil, fmt.Errorf("%s is %T, not a tuple of integers", what, v)
	}
	out := make([]int64, len(items))
	for i, it := range items {
		x, ok := toInt64(it)
		if !ok {
			return nil, fmt.Errorf("%s[%d] = %s is not an integer", what, i, short(it))
		}
		out[i] = x
	}
	return out, nil
}
