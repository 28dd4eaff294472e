// Package dirsync makes a dir's entries (a rename or create in it) durable, where the
// system has a way to.
package dirsync

import "os"

// Sync does nothing on Windows: a dir cannot be opened for writing, which
// FlushFileBuffers needs ("Access is denied" otherwise), and NTFS keeps dir entries in
// its own log. Files are fsynced before their rename as everywhere.
func Sync(*os.File) error { return nil }
