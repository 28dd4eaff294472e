//go:build tools

// Package pins keeps the project's chosen dependencies pinned in go.mod while the code that
// will import them is being written; `go mod tidy` honours build-tagged files.
package pins

import (
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jotfs/fastcdc-go"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/pressly/goose/v3"
	_ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "modernc.org/sqlite"
	_ "pgregory.net/rapid"
	_ "sigs.k8s.io/controller-runtime"
	_ "sigs.k8s.io/controller-runtime/pkg/envtest"
)
