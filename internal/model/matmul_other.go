//go:build !amd64 || purego

package model

// KernelName names the matmul kernel in use.
func KernelName() string { return "generic" }
