//go:build !windows

// Package dirsync makes a dir's entries (a rename or create in it) durable, where the
// system has a way to.
package dirsync

import "os"

// Sync fsyncs the open dir d.
func Sync(d *os.File) error { return d.Sync() }
