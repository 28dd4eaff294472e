//go:build !linux

package bench

import "net"

// splicePipe reports false: there is no splice(2) here.
func (r *Relay) splicePipe(dst, src net.Conn) bool { return false }
