// Command gencerts makes throwaway certificates for trying xdsbridge
// with mutual TLS: a CA, a server certificate for localhost and
// 127.0.0.1, and client certificates whose URI SANs are SPIFFE IDs.
//
//	go run ./examples/tls/gencerts                # writes examples/tls/certs/
//	go run ./examples/tls/gencerts -server-only   # re-issues server.crt with the same CA: a rotation
//
// It writes, in -out:
//
//	ca.crt, ca.key           the CA (keep ca.key to issue more)
//	server.crt, server.key   DNS:localhost, IP:127.0.0.1, IP:::1
//	NAME.crt, NAME.key       per -clients entry PATH, URI spiffe://TRUST-DOMAIN/PATH,
//	                         NAME being PATH's last element
//
// Keys are ECDSA P-256 in PKCS #8, mode 0600. Every file is written to
// a temporary name and renamed into place, so a server watching the
// directory never reads half a file. These certificates are for trying
// things out: use your own PKI (SPIRE, cert-manager, Vault) for real.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// options are the command line.
type options struct {
	out         string
	days        int
	trustDomain string
	// clients are SPIFFE ID paths, e.g. envoy/envoy-1.
	clients    []string
	serverOnly bool
}

func main() {
	var o options
	var clients string
	flag.StringVar(&o.out, "out", filepath.Join("examples", "tls", "certs"), "directory to write to")
	flag.IntVar(&o.days, "days", 30, "validity of the certificates, in days")
	flag.StringVar(&o.trustDomain, "trust-domain", "example.org", "SPIFFE trust domain of the client identities")
	flag.StringVar(&clients, "clients", "envoy/envoy-1,envoy/envoy-2,grpc/grpc-1", "comma-separated SPIFFE ID paths, one client certificate each")
	flag.BoolVar(&o.serverOnly, "server-only", false, "re-issue only the server certificate, with the CA already in -out")
	flag.Parse()
	if clients != "" {
		o.clients = strings.Split(clients, ",")
	}
	written, err := run(o, time.Now())
	if err != nil {
		fmt.Fprintln(os.Stderr, "gencerts:", err)
		os.Exit(1)
	}
	for _, f := range written {
		fmt.Println(f)
	}
}

// run writes the certificates and returns the files written.
func run(o options, now time.Time) ([]string, error) {
	if o.days < 1 {
		return nil, fmt.Errorf("-days %d: want at least 1", o.days)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}
	w := &writer{dir: o.out}
	notAfter := now.Add(time.Duration(o.days) * 24 * time.Hour)

	var ca *x509.Certificate
	var caKey *ecdsa.PrivateKey
	var err error
	if o.serverOnly {
		if ca, caKey, err = loadCA(o.out); err != nil {
			return nil, err
		}
	} else {
		if ca, caKey, err = newCA(now, notAfter); err != nil {
			return nil, err
		}
		w.cert("ca.crt", ca.Raw)
		w.key("ca.key", caKey)
	}

	server := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "xdsbridge"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	w.leaf("server", server, ca, caKey, now, notAfter)
	if o.serverOnly {
		return w.done()
	}

	seen := map[string]string{}
	for _, p := range o.clients {
		p = strings.Trim(strings.TrimSpace(p), "/")
		name := path.Base(p)
		if p == "" || name == "ca" || name == "server" {
			return nil, fmt.Errorf("client %q: want a path such as envoy/envoy-1 whose last element is not ca or server", p)
		}
		if prev, ok := seen[name]; ok {
			return nil, fmt.Errorf("clients %q and %q would both be written to %s.crt", prev, p, name)
		}
		seen[name] = p
		id := &url.URL{Scheme: "spiffe", Host: o.trustDomain, Path: "/" + p}
		client := &x509.Certificate{
			Subject:     pkix.Name{CommonName: name},
			URIs:        []*url.URL{id},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		w.leaf(name, client, ca, caKey, now, notAfter)
	}
	return w.done()
}

func newCA(now, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "xdsbridge example CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := readPEM(filepath.Join(dir, "ca.crt"), "CERTIFICATE")
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(cb)
	if err != nil {
		return nil, nil, fmt.Errorf("ca.crt: %w", err)
	}
	kb, err := readPEM(filepath.Join(dir, "ca.key"), "PRIVATE KEY")
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kb)
	if err != nil {
		return nil, nil, fmt.Errorf("ca.key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("ca.key: not an ECDSA key")
	}
	return ca, key, nil
}

func readPEM(file, typ string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w (run without -server-only first)", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != typ {
		return nil, fmt.Errorf("%s: no %s PEM block", file, typ)
	}
	return block.Bytes, nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

// writer writes PEM files, keeping the first error.
type writer struct {
	dir     string
	written []string
	err     error
}

func (w *writer) leaf(name string, tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey, now, notAfter time.Time) {
	if w.err != nil {
		return
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		w.err = err
		return
	}
	if tmpl.SerialNumber, err = serial(); err != nil {
		w.err = err
		return
	}
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), notAfter
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		w.err = fmt.Errorf("%s: %w", name, err)
		return
	}
	// The key first: a server that sees the new certificate must find
	// its key already there.
	w.key(name+".key", key)
	w.cert(name+".crt", der)
}

func (w *writer) cert(name string, der []byte) {
	w.write(name, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func (w *writer) key(name string, key *ecdsa.PrivateKey) {
	if w.err != nil {
		return
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		w.err = err
		return
	}
	w.write(name, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// write replaces name in the directory: a temporary file, then a rename.
func (w *writer) write(name string, data []byte, mode os.FileMode) {
	if w.err != nil {
		return
	}
	f, err := os.CreateTemp(w.dir, "."+name+".*")
	if err != nil {
		w.err = err
		return
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(w.dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		w.err = err
		return
	}
	w.written = append(w.written, filepath.Join(w.dir, name))
}

func (w *writer) done() ([]string, error) { return w.written, w.err }
