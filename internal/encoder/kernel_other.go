//go:build !amd64 || purego

package encoder

func pickScanFor(Kernel, int, int) func(*basis, *tile, int, int) (int, uint32) { return scanGeneric }

// KernelName reports the kernel KernelAuto selects on this machine.
func KernelName() string { return "generic" }

func pickIllFor(Kernel, int) func(*basis, *tile, int, int) (int, uint32) { return illGeneric }
