package controllers

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	syncv1 "github.com/syncedfolder/synced-folder/api/v1alpha1"
)

// pgTimeout bounds every PostgreSQL conversation of a reconcile, so an unreachable server
// turns into a DatabaseReady=False condition instead of a stuck worker.
const pgTimeout = 10 * time.Second

// provisionedName is the role and database name of a folder: readable, unique per
// namespace/name (the hash), within PostgreSQL's 63-byte identifier limit.
func provisionedName(f *syncv1.SyncedFolder) string {
	sum := sha256.Sum256([]byte(f.Namespace + "/" + f.Name))
	clean := func(s string) string { return strings.ReplaceAll(s, "-", "_") }
	base := "sf_" + clean(f.Namespace) + "_" + clean(f.Name)
	if len(base) > 54 {
		base = base[:54]
	}
	return base + "_" + hex.EncodeToString(sum[:4])
}

// postgresURL builds a libpq URL.
func postgresURL(user, password, host string, port int32, database, sslMode string) string {
	if port == 0 {
		port = 5432
	}
	if sslMode == "" {
		sslMode = "require"
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(user, password),
		Host:     net.JoinHostPort(host, strconv.Itoa(int(port))),
		Path:     "/" + database,
		RawQuery: url.Values{"sslmode": {sslMode}}.Encode(),
	}
	return u.String()
}

// newPassword is 32 random bytes, URL-safe so it needs no quoting anywhere.
func newPassword() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings is on since
// PostgreSQL 9.1, so only quotes need doubling). CREATE ROLE takes no parameters.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// pgConnect opens one connection with the reconcile's PostgreSQL timeout.
func pgConnect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	cfg.ConnectTimeout = pgTimeout
	return pgx.ConnectConfig(ctx, cfg)
}

// provisionDatabase makes role (able to log in with password) and database (owned by role)
// exist; it is idempotent and resets the password to the one in the folder's Secret, so the
// two never disagree.
func provisionDatabase(ctx context.Context, adminURL, name, password string) error {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	conn, err := pgConnect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect as admin: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	ident := pgx.Identifier{name}.Sanitize()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("look up role %q: %w", name, err)
	}
	verb := "CREATE"
	if exists {
		verb = "ALTER"
	}
	if _, err := conn.Exec(ctx, verb+" ROLE "+ident+" WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD "+quoteLiteral(password)); err != nil {
		return fmt.Errorf("%s role %q: %w", strings.ToLower(verb), name, err)
	}
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %q: %w", name, err)
	}
	if !exists {
		// The admin must be a member of the new owner to create a database for it
		// (PostgreSQL 16+ no longer implies that for CREATEROLE admins).
		if _, err := conn.Exec(ctx, "GRANT "+ident+" TO CURRENT_USER"); err != nil {
			return fmt.Errorf("grant role %q to admin: %w", name, err)
		}
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident+" OWNER "+ident); err != nil {
			return fmt.Errorf("create database %q: %w", name, err)
		}
		if _, err := conn.Exec(ctx, "REVOKE ALL ON DATABASE "+ident+" FROM PUBLIC"); err != nil {
			return fmt.Errorf("revoke public access to database %q: %w", name, err)
		}
	}
	return nil
}

// dropDatabase drops the folder's database (closing its sessions) and role, if they exist.
func dropDatabase(ctx context.Context, adminURL, name string) error {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	conn, err := pgConnect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect as admin: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %q: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+ident); err != nil {
		return fmt.Errorf("drop role %q: %w", name, err)
	}
	return nil
}

// pingDatabase checks that dsn accepts a connection and a query.
func pingDatabase(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	conn, err := pgConnect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}
