// sysproc_linux.go: node processes die with the controller on Linux.

package main

import "syscall"

// nodeSysProcAttr makes the kernel SIGKILL a node process when the
// controller dies, so a crashed controller or test leaves no node behind.
func nodeSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
