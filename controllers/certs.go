package controllers

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// Lifetimes of the per-folder CA and of the server's serving certificate. A certificate is
// renewed once less than a third of its lifetime is left, so a reconcile that runs at least
// every few months always renews in time.
const (
	caLifetime      = 10 * 365 * 24 * time.Hour
	servingLifetime = 365 * 24 * time.Hour
)

// Keys of the CA and TLS Secrets.
const (
	keyCACert  = "ca.crt"
	keyCAKey   = "ca.key"
	keyTLSCert = "tls.crt"
	keyTLSKey  = "tls.key"
)

// keyPair is a certificate with its private key, both in PEM.
type keyPair struct {
	CertPEM []byte
	KeyPEM  []byte
}

// needsRenewal reports whether cert should be replaced at now: expired or in the last third
// of its lifetime, or not yet valid (a clock jump).
func needsRenewal(cert *x509.Certificate, now time.Time) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return now.Before(cert.NotBefore) || now.After(cert.NotAfter.Add(-life/3))
}

// parsePair decodes a PEM certificate and key and checks they belong together.
func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse certificate: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, errors.New("no PEM private key")
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("private key cannot sign")
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, errors.New("private key does not match certificate")
	}
	return cert, signer, nil
}

// ensureCA returns the CA in (certPEM, keyPEM) when it is valid and not due for renewal at
// now, and a new CA otherwise; renewed reports which.
func ensureCA(certPEM, keyPEM []byte, commonName string, now time.Time) (kp keyPair, renewed bool, err error) {
	if cert, _, err := parsePair(certPEM, keyPEM); err == nil && cert.IsCA && !needsRenewal(cert, now) {
		return keyPair{CertPEM: certPEM, KeyPEM: keyPEM}, false, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return keyPair{}, false, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"synced-folder"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	kp, err = sign(tmpl, key, nil, nil)
	return kp, true, err
}

// ensureServing returns the serving certificate in (certPEM, keyPEM) when it was issued by
// ca, covers exactly dnsNames and is not due for renewal at now, and a new one otherwise.
func ensureServing(certPEM, keyPEM []byte, ca keyPair, dnsNames []string, now time.Time) (kp keyPair, renewed bool, err error) {
	caCert, caKey, err := parsePair(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		return keyPair{}, false, fmt.Errorf("CA: %w", err)
	}
	if cert, _, err := parsePair(certPEM, keyPEM); err == nil &&
		cert.CheckSignatureFrom(caCert) == nil &&
		slices.Equal(cert.DNSNames, dnsNames) &&
		!needsRenewal(cert, now) {
		return keyPair{CertPEM: certPEM, KeyPEM: keyPEM}, false, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return keyPair{}, false, fmt.Errorf("generate serving key: %w", err)
	}
	notAfter := now.Add(servingLifetime)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: dnsNames[0]},
		DNSNames:    dnsNames,
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	kp, err = sign(tmpl, key, caCert, caKey)
	return kp, true, err
}

// sign issues tmpl for key, signed by parent/parentKey, or self-signed when parent is nil.
func sign(tmpl *x509.Certificate, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey crypto.Signer) (keyPair, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return keyPair{}, fmt.Errorf("serial number: %w", err)
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return keyPair{}, fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return keyPair{}, fmt.Errorf("marshal private key: %w", err)
	}
	return keyPair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}
