package syncserver

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/blobs"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// Options configure Run: where to listen, where the data lives, and the server's Config.
type Options struct {
	// Listen is the TCP address to listen on.
	Listen string
	// DataDir holds the blocks (DataDir/blocks) and the embedded database.
	DataDir string
	// DirectIO writes and reads the large blocks of streamed uploads around the page
	// cache (blobs.WithDirectIO).
	DirectIO bool
	// OpenStore opens the metadata store; Run closes it when it returns.
	OpenStore func(ctx context.Context) (store.Store, error)
	// TokenFile lists the bearer tokens; empty means no authentication, which Run only
	// allows on a loopback address.
	TokenFile string
	// Authenticator, when set, is tried after the token file's tokens (the Kubernetes
	// TokenReview authenticator, syncserver/kubeauth); it counts as authentication for the
	// loopback rule.
	Authenticator Authenticator
	// TLSCertFile and TLSKeyFile switch on TLS when both are set.
	TLSCertFile, TLSKeyFile string
	// ReadHeaderTimeout bounds how long a client may take to send a request's headers
	// (default 10s), and ReadTimeout how long it may take to send a whole request, body
	// included (default 10m: a 16 MiB block at 250 kbit/s). Without them a client that
	// trickles a byte now and then holds a connection and a goroutine forever. Long
	// polls are not affected: the wait for a response is not a read.
	ReadHeaderTimeout, ReadTimeout time.Duration
	// ShutdownGrace is how long in-flight requests get to finish after a signal.
	ShutdownGrace time.Duration
	// Config holds the limits and policies of the server.
	Config Config
	// Ready, when set, is called with the bound address once the server accepts
	// connections.
	Ready func(addr net.Addr)
}

// CheckListen refuses a listen address that is not loopback when there is no
// authentication: an open server must not be reachable from other machines.
func CheckListen(addr string, authenticated bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	if authenticated {
		return nil
	}
	if !IsLoopbackHost(host) {
		return fmt.Errorf("without --token-file or --tokenreview-audience the server has no authentication, so it listens only on a loopback address (127.0.0.1, ::1 or localhost), and %q is not one; give --token-file or listen on 127.0.0.1", addr)
	}
	return nil
}

// IsLoopbackHost reports whether host (of a listen address) is localhost or a loopback IP.
func IsLoopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// Run serves until ctx is done, then stops accepting connections, gives in-flight
// requests opts.ShutdownGrace to finish and closes the stores.
func Run(ctx context.Context, opts Options, logger *slog.Logger) (err error) {
	var chain Chain
	if opts.TokenFile != "" {
		tokens, err := LoadTokenFile(opts.TokenFile)
		if err != nil {
			return err
		}
		chain = append(chain, tokens)
		logger.Info("token authentication", "tokens", tokens.Len())
	}
	if opts.Authenticator != nil {
		chain = append(chain, opts.Authenticator)
	}
	var auth Authenticator
	switch len(chain) {
	case 0:
	case 1:
		auth = chain[0]
	default:
		auth = chain
	}
	if err := CheckListen(opts.Listen, auth != nil); err != nil {
		return err
	}
	var tlsConfig *tls.Config
	if (opts.TLSCertFile == "") != (opts.TLSKeyFile == "") {
		return errors.New("TLS needs both --tls-cert-file and --tls-key-file")
	}
	if opts.TLSCertFile != "" {
		// Loaded on every handshake, so a renewed certificate is served without a restart.
		if _, err := tls.LoadX509KeyPair(opts.TLSCertFile, opts.TLSKeyFile); err != nil {
			return fmt.Errorf("load TLS key pair: %w", err)
		}
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(opts.TLSCertFile, opts.TLSKeyFile)
			return &c, err
		}}
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	blocks, err := blobs.Open(filepath.Join(opts.DataDir, "blocks"), blobs.WithDirectIO(opts.DirectIO))
	if err != nil {
		return fmt.Errorf("open block store: %w", err)
	}
	st, err := opts.OpenStore(ctx)
	if err != nil {
		return fmt.Errorf("open metadata store: %w", err)
	}
	defer func() {
		if cerr := st.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close metadata store: %w", cerr)
		}
		logger.Info("store closed")
	}()
	srv, err := New(opts.Config, st, blocks, auth, logger)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: cmp.Or(opts.ReadHeaderTimeout, 10*time.Second),
		ReadTimeout:       cmp.Or(opts.ReadTimeout, 10*time.Minute),
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		TLSConfig:         tlsConfig,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	hs.RegisterOnShutdown(srv.Shutdown)
	srv.Start()
	serveErr := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			serveErr <- hs.ServeTLS(ln, "", "")
		} else {
			serveErr <- hs.Serve(ln)
		}
	}()
	logger.Info("listening", "addr", ln.Addr().String(), "tls", tlsConfig != nil, "auth", auth != nil,
		"dataDir", opts.DataDir, "folderId", st.FolderID())
	if opts.Ready != nil {
		opts.Ready(ln.Addr())
	}
	select {
	case err := <-serveErr:
		srv.Shutdown()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down", "grace", opts.ShutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), opts.ShutdownGrace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		logger.Warn("in-flight requests cut at the end of the grace period", "err", err)
		_ = hs.Close()
	}
	srv.Shutdown()
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
