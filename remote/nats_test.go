package remote

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"
)

// TestNATSCredentials: a server that admits one nkey user takes a bridge
// or mirror connection that names the seed's file and refuses one without;
// the seed never shows in the log, nor a URL's password.
func TestNATSCredentials(t *testing.T) {
	kp, err := nkeys.CreateUser()
	require.NoError(t, err)
	pub, err := kp.PublicKey()
	require.NoError(t, err)
	seed, err := kp.Seed()
	require.NoError(t, err)
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	require.NoError(t, os.WriteFile(seedFile, seed, 0o600))
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	require.NoError(t, err)
	go s.Start()
	defer s.Shutdown()
	require.True(t, s.ReadyForConnections(10*time.Second))
	url := "nats://127.0.0.1:" + strings.TrimPrefix(s.Addr().(*net.TCPAddr).AddrPort().String(), "127.0.0.1:")

	var logb bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logb, nil))
	nc, _, err := NATS{URL: url, NKey: seedFile}.Connect("t", log)
	require.NoError(t, err)
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.True(t, nc.IsConnected(), "the nkey user is admitted")
	nc.Close()

	nc, _, err = NATS{URL: "nats://fdp:hunter2@" + strings.TrimPrefix(url, "nats://")}.Connect("t", log)
	if err == nil {
		time.Sleep(500 * time.Millisecond)
		require.False(t, nc.IsConnected(), "a connection without the nkey is refused")
		nc.Close()
	}
	require.NotContains(t, logb.String(), string(seed))
	require.NotContains(t, logb.String(), "hunter2")
	require.Equal(t, "nats://h:4222,tls://k:1", NATS{URL: "nats://u:hunter2@h:4222, tls://k:1"}.Redacted())

	for _, tc := range []struct {
		n    NATS
		want string
	}{
		{NATS{}, "no NATS url"},
		{NATS{URL: "http://h:1"}, `scheme "http"`},
		{NATS{URL: "nats://u:hunter2@/x"}, "want nats://host:port"},
		{NATS{URL: "nats://h:1", Creds: "a", NKey: "b"}, "name one"},
	} {
		err := tc.n.Check()
		require.ErrorContains(t, err, tc.want)
		require.NotContains(t, err.Error(), "hunter2")
	}
	_, _, err = NATS{URL: url, NKey: filepath.Join(t.TempDir(), "missing")}.Connect("t", log)
	require.ErrorContains(t, err, "nkey file")
}

// TestNATSTLS: a tls:// URL turns TLS on (the server here accepts only
// TLS), the server's certificate verified against the CAs of --tls-ca: a
// server that the CAs do not sign is refused.
func TestNATSTLS(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	ca := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true, TLSTimeout: 5,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}})
	require.NoError(t, err)
	go s.Start()
	defer s.Shutdown()
	require.True(t, s.ReadyForConnections(10*time.Second))
	port := s.Addr().(*net.TCPAddr).Port
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	connected := func(n NATS) bool {
		nc, _, err := n.Connect("t", log)
		if err != nil {
			return false
		}
		defer nc.Close()
		deadline := time.Now().Add(3 * time.Second)
		for !nc.IsConnected() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		return nc.IsConnected()
	}
	require.True(t, connected(NATS{URL: fmt.Sprintf("tls://127.0.0.1:%d", port), CA: ca}), "tls:// with the CA connects")
	require.False(t, connected(NATS{URL: fmt.Sprintf("tls://127.0.0.1:%d", port)}), "an unknown CA is refused")
}
