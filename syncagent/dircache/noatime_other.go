//go:build !linux

package dircache

// noAtime is 0 where open(2) has no O_NOATIME.
const noAtime = 0
