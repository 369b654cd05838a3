// sysproc_other.go: no parent-death signal outside Linux.

//go:build !linux

package main

import "syscall"

// nodeSysProcAttr is nil: only Linux can tie a child's life to its parent;
// elsewhere the controller's cleanup kills its nodes.
func nodeSysProcAttr() *syscall.SysProcAttr { return nil }
