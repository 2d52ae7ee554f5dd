package torchload

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// gopickle allocates whatever a length field says before it reads (BINBYTES8,
// FRAME, ...), and a huge allocation is a fatal runtime error that recover
// cannot catch. scanPickle walks the opcodes first, without building
// anything, and rejects a pickle whose lengths run past its end or whose
// estimated memory cost exceeds a budget. Only then does gopickle see it.

const (
	maxLine     = 4096    // text opcodes (INT, LONG, FLOAT, GLOBAL ...)
	maxLongLen  = 1024    // LONG1/LONG4 bytes: gopickle's decoding is quadratic
	maxCostDflt = 1 << 30 // bytes of Go memory the unpickled objects may take
)

type scanError struct{ msg string }

func (e *scanError) Error() string { return e.msg }

// scanPickle reads one pickle (through its STOP opcode) from r, of which at
// most limit bytes remain, and returns its length in bytes.
func scanPickle(r *bufio.Reader, limit int64, maxCost int64) (int64, error) {
	var pos, cost int64
	fail := func(op byte, format string, args ...any) (int64, error) {
		return 0, &scanError{fmt.Sprintf("pickle opcode 0x%02x at byte %d: ", op, pos) + fmt.Sprintf(format, args...)}
	}
	readN := func(n int) ([]byte, error) {
		if int64(n) > limit-pos {
			return nil, io.ErrUnexpectedEOF
		}
		b := make([]byte, n)
		_, err := io.ReadFull(r, b)
		pos += int64(n)
		return b, err
	}
	skip := func(n uint64) error {
		if n > uint64(limit-pos) {
			return io.ErrUnexpectedEOF
		}
		for n > 0 {
			step := int(min(n, 1<<30))
			d, err := r.Discard(step)
			pos += int64(d)
			if err != nil {
				return err
			}
			n -= uint64(d)
		}
		return nil
	}
	line := func() error {
		for i := 0; ; i++ {
			if i > maxLine {
				return fmt.Errorf("text argument longer than %d bytes", maxLine)
			}
			if pos >= limit {
				return io.ErrUnexpectedEOF
			}
			c, err := r.ReadByte()
			if err != nil {
				return err
			}
			pos++
			if c == '\n' {
				return nil
			}
		}
	}
	for {
		if pos >= limit {
			return 0, &scanError{fmt.Sprintf("pickle ends at byte %d without a STOP opcode", pos)}
		}
		op, err := r.ReadByte()
		if err != nil {
			return 0, &scanError{fmt.Sprintf("pickle truncated at byte %d", pos)}
		}
		pos++
		cost += 64 // stack slot, memo entry, small object
		var n uint64
		var lenErr error
		switch op {
		case '.': // STOP
			return pos, nil
		case '(': // MARK: gopickle starts a new 16-slot stack
			cost += 512
		case '}', ']', 0x8f, ')', 'R', 0x81, 0x92, 'b', 'o', 'i':
			cost += 192
			if op == 'i' {
				if err := line(); err == nil {
					err = line()
				}
				if err != nil {
					return fail(op, "%v", err)
				}
			}
		case '0', '1', '2', 'N', 'a', 'd', 'e', 'l', 's', 't', 'u', 0x85, 0x86, 0x87, 0x88, 0x89,
			0x90, 0x91, 0x93, 0x94, 'Q':
		case 'K', 'h', 'q', 0x80:
			lenErr = skip(1)
		case 'M':
			lenErr = skip(2)
		case 'J', 'j', 'r':
			lenErr = skip(4)
		case 'G':
			lenErr = skip(8)
		case 'F', 'I', 'L', 'P', 'S', 'V', 'g', 'p':
			lenErr = line()
		case 'c':
			if lenErr = line(); lenErr == nil {
				lenErr = line()
			}
		case 'U', 'C', 0x8c: // 1-byte length
			var b []byte
			if b, lenErr = readN(1); lenErr == nil {
				n = uint64(b[0])
				lenErr = skip(n)
			}
		case 0x8a: // LONG1
			var b []byte
			if b, lenErr = readN(1); lenErr == nil {
				if b[0] == 0 { // gopickle indexes the last byte of an empty long
					return fail(op, "empty LONG1")
				}
				n = uint64(b[0])
				lenErr = skip(n)
			}
		case 'T', 'X', 'B', 0x8b: // 4-byte length
			var b []byte
			if b, lenErr = readN(4); lenErr == nil {
				n = uint64(binary.LittleEndian.Uint32(b))
				if (op == 'T' || op == 0x8b) && int32(n) < 0 {
					return fail(op, "negative length")
				}
				if op == 0x8b && (n == 0 || n > maxLongLen) {
					return fail(op, "LONG4 of %d bytes", n)
				}
				lenErr = skip(n)
			}
		case 0x8d, 0x8e, 0x96, 0x95: // 8-byte length; FRAME's content is opcodes
			var b []byte
			if b, lenErr = readN(8); lenErr == nil {
				n = binary.LittleEndian.Uint64(b)
				if n > uint64(limit-pos) {
					return fail(op, "length %d runs past the end of the pickle (%d bytes left)", n, limit-pos)
				}
				if op != 0x95 {
					lenErr = skip(n)
				}
			}
		default:
			// EXT1/2/4, NEXT_BUFFER, READONLY_BUFFER and unknown opcodes:
			// nothing torch.save writes.
			return fail(op, "unsupported opcode")
		}
		if lenErr != nil {
			return fail(op, "argument runs past the end of the pickle: %v", lenErr)
		}
		cost += int64(n) * 2 // the bytes, plus a string/[]byte copy
		if cost > maxCost {
			return fail(op, "unpickling would need more than %d MiB of memory", maxCost>>20)
		}
	}
}
