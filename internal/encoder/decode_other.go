//go:build !amd64 || purego

package encoder

func simdDecodable(Params) bool { return false }

func (l *Layer) decodeSIMD(*fieldReader, []float32, bool, int, int) error { return nil }
