package encoder

// Payload bit order (docs/FORMAT.md): a little-endian bit stream. Bit i of the
// stream is bit (i mod 8) of byte i/8; every field is written least
// significant bit first. A block is seed (K bits, unsigned), exponent (E bits,
// two's complement, relative to the layer's exponent bias), then q_0 … q_{P−1}
// (B bits each, two's complement). Blocks follow each other with no padding;
// the last byte is zero-padded.

type bitWriter struct {
	buf  []byte
	acc  uint64
	nacc uint
}

func (w *bitWriter) write(v uint64, n uint) {
	w.acc |= (v & (1<<n - 1)) << w.nacc
	w.nacc += n
	for w.nacc >= 8 {
		w.buf = append(w.buf, byte(w.acc))
		w.acc >>= 8
		w.nacc -= 8
	}
}

func (w *bitWriter) flush() []byte {
	if w.nacc > 0 {
		w.buf = append(w.buf, byte(w.acc))
		w.acc, w.nacc = 0, 0
	}
	return w.buf
}

type bitReader struct {
	buf  []byte
	pos  int // next byte
	acc  uint64
	nacc uint
}

// read returns the next n ≤ 32 bits; past the end it reads zeros (callers
// check the payload length up front).
func (r *bitReader) read(n uint) uint64 {
	for r.nacc < n {
		var b byte
		if r.pos < len(r.buf) {
			b = r.buf[r.pos]
		}
		r.pos++
		r.acc |= uint64(b) << r.nacc
		r.nacc += 8
	}
	v := r.acc & (1<<n - 1)
	r.acc >>= n
	r.nacc -= n
	return v
}

// seek positions the reader at stream bit `bit`.
func (r *bitReader) seek(bit int) {
	r.pos = bit / 8
	r.acc, r.nacc = 0, 0
	if off := uint(bit % 8); off > 0 {
		r.read(off)
	}
}

func signExtend(v uint64, n uint) int {
	return int(int64(v<<(64-n)) >> (64 - n))
}
