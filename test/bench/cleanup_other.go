//go:build !linux

package bench

import "errors"

// syncFS does nothing where syncfs(2) does not exist.
func syncFS(string) error { return nil }

// evictCache does nothing where posix_fadvise does not exist.
func evictCache(string) error { return nil }

func availBytes(string) (int64, error) { return 0, errors.New("free space unknown on this system") }
