package controllers

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

func parseCert(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCertificatesIssueVerifyAndRenew(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	names := []string{"web.ns.svc", "web", "web.ns", "web.ns.svc.cluster.local"}
	ca, renewed, err := ensureCA(nil, nil, "test CA", now)
	if err != nil || !renewed {
		t.Fatalf("new CA: renewed=%v err=%v", renewed, err)
	}
	srv, renewed, err := ensureServing(nil, nil, ca, names, now)
	if err != nil || !renewed {
		t.Fatalf("new serving cert: renewed=%v err=%v", renewed, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(parseCert(t, ca.CertPEM))
	leaf := parseCert(t, srv.CertPEM)
	for _, n := range names {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: n, Roots: pool, CurrentTime: now}); err != nil {
			t.Errorf("verify for %s: %v", n, err)
		}
	}

	tests := []struct {
		name        string
		at          time.Time
		names       []string
		ca          keyPair
		wantRenewed bool
	}{
		{"fresh stays", now.Add(24 * time.Hour), names, ca, false},
		{"two thirds into its life stays", now.Add(200 * 24 * time.Hour), names, ca, false},
		{"last third is renewed", now.Add(250 * 24 * time.Hour), names, ca, true},
		{"expired is renewed", now.Add(400 * 24 * time.Hour), names, ca, true},
		{"clock before validity is renewed", now.Add(-48 * time.Hour), names, ca, true},
		{"other DNS names are reissued", now.Add(time.Hour), append([]string{"other"}, names...), ca, true},
	}
	otherCA, _, err := ensureCA(nil, nil, "other CA", now)
	if err != nil {
		t.Fatal(err)
	}
	tests = append(tests, struct {
		name        string
		at          time.Time
		names       []string
		ca          keyPair
		wantRenewed bool
	}{"a new CA reissues", now.Add(time.Hour), names, otherCA, true})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, renewed, err := ensureServing(srv.CertPEM, srv.KeyPEM, tc.ca, tc.names, tc.at)
			if err != nil {
				t.Fatal(err)
			}
			if renewed != tc.wantRenewed {
				t.Fatalf("renewed = %v, want %v", renewed, tc.wantRenewed)
			}
			if !renewed && string(got.CertPEM) != string(srv.CertPEM) {
				t.Fatal("kept certificate differs from the input")
			}
			if renewed {
				c := parseCert(t, got.CertPEM)
				p := x509.NewCertPool()
				p.AddCert(parseCert(t, tc.ca.CertPEM))
				if c.NotBefore.After(tc.at) {
					t.Fatalf("renewed certificate is not valid yet at %s", tc.at)
				}
				// The test CA itself starts at now, so verify no earlier than that.
				at := tc.at
				if at.Before(now) {
					at = now
				}
				if _, err := c.Verify(x509.VerifyOptions{DNSName: tc.names[0], Roots: p, CurrentTime: at}); err != nil {
					t.Fatalf("renewed certificate does not verify at %s: %v", tc.at, err)
				}
			}
		})
	}
}

func TestCARenewalAndBadInput(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, _, err := ensureCA(nil, nil, "CA", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, renewed, _ := ensureCA(ca.CertPEM, ca.KeyPEM, "CA", now.Add(365*24*time.Hour)); renewed {
		t.Error("a one-year-old CA was renewed")
	}
	if _, renewed, _ := ensureCA(ca.CertPEM, ca.KeyPEM, "CA", now.Add(8*365*24*time.Hour)); !renewed {
		t.Error("a CA in its last third was not renewed")
	}
	other, _, _ := ensureCA(nil, nil, "CA", now)
	if _, renewed, _ := ensureCA(ca.CertPEM, other.KeyPEM, "CA", now); !renewed {
		t.Error("a CA with a mismatched key was kept")
	}
	if _, renewed, _ := ensureCA([]byte("garbage"), nil, "CA", now); !renewed {
		t.Error("garbage was kept as a CA")
	}
	if _, _, err := ensureServing(nil, nil, keyPair{CertPEM: []byte("x")}, []string{"a"}, now); err == nil {
		t.Error("serving certificate issued from an unusable CA")
	}
}
