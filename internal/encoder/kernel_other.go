//go:build !amd64 || purego

package encoder

func kernelsFor(Kernel, *basis) kernels { return genericKernels }

// KernelName reports the kernel KernelAuto selects on this machine.
func KernelName() string { return "generic" }
