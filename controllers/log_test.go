package controllers

import (
	"io"
	"log/slog"
	"os"

	"github.com/go-logr/logr"
)

// discardLogger keeps the manager quiet in tests unless SYNC_TEST_LOG=1 asks for its logs.
func discardLogger() logr.Logger {
	w := io.Discard
	if os.Getenv("SYNC_TEST_LOG") == "1" {
		w = os.Stderr
	}
	return logr.FromSlogHandler(slog.NewTextHandler(w, nil))
}
