package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// peerPackages maps each peer program to its Debian package.
var peerPackages = map[string]string{"rsync": "rsync", "syncthing": "syncthing"}

// EnsurePeers finds the peer programs of systems, installing the missing ones with
// apt-get when running as root, and returns their versions. Without root a missing peer
// is an error that says what to install.
func EnsurePeers(ctx context.Context, systems []string, log io.Writer) ([]string, error) {
	var missing []string
	for _, s := range systems {
		if pkg, ok := peerPackages[s]; ok {
			if _, err := exec.LookPath(s); err != nil {
				missing = append(missing, pkg)
			}
		}
	}
	if len(missing) > 0 {
		if os.Geteuid() != 0 {
			return nil, fmt.Errorf("peers missing: %s; install them (apt-get install %s) or run as root, or leave them out with -systems ours",
				strings.Join(missing, ", "), strings.Join(missing, " "))
		}
		for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)} {
			cmd := exec.CommandContext(ctx, "apt-get", args...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			cmd.Stdout, cmd.Stderr = log, log
			if err := cmd.Run(); err != nil {
				return nil, fmt.Errorf("apt-get %s: %w", args[0], err)
			}
		}
	}
	var versions []string
	for _, s := range systems {
		switch s {
		case "rsync":
			out, err := exec.CommandContext(ctx, "rsync", "--version").Output()
			if err != nil {
				return nil, fmt.Errorf("run rsync --version: %w", err)
			}
			versions = append(versions, firstLine(out))
		case "syncthing":
			out, err := exec.CommandContext(ctx, "syncthing", "--version").Output()
			if err != nil {
				return nil, fmt.Errorf("run syncthing --version: %w", err)
			}
			f := strings.Fields(firstLine(out))
			if len(f) < 2 {
				return nil, fmt.Errorf("parse syncthing version %q", out)
			}
			versions = append(versions, "syncthing "+f[1])
		}
	}
	return versions, nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return strings.Join(strings.Fields(s), " ")
}

// BuildEngine builds syncserver and syncagent from the module at root into binDir and
// returns their paths.
func BuildEngine(ctx context.Context, root, binDir string) (Bins, error) {
	b := Bins{Server: filepath.Join(binDir, "syncserver"), Agent: filepath.Join(binDir, "syncagent")}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", binDir+"/", "./cmd/syncserver", "./cmd/syncagent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return b, fmt.Errorf("build engine: %w: %s", err, out)
	}
	return b, nil
}
