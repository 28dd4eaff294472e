// Command pause is the local cluster's sandbox ("pause") image: it holds a pod's namespaces open
// and does nothing else. No registry is reachable on these machines, so the image containerd's
// sandbox_image names is packed from this static binary instead of pulled. As PID 1 of a pod
// that shares its PID namespace it must reap orphans, and it must exit on SIGTERM/SIGINT so
// the runtime can stop the sandbox without waiting for a kill.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
