package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// fuzzConnDeadline bounds each fuzz connection: once the client's first
// flight is sent and its write side closed, the server must close the
// connection well within it.
const fuzzConnDeadline = 5 * time.Second

// secureListenerForFuzz serves a trivial handler on 127.0.0.1 with the TLS
// configuration and HTTP server --secure-listen uses (a self-signed
// certificate), and returns its address and a client that trusts it and
// makes a new TLS connection for every request.
func secureListenerForFuzz(tb testing.TB) (string, *http.Client) {
	tb.Helper()
	log := slog.New(slog.DiscardHandler)
	tlsCfg, err := (&SecureOptions{Listen: "127.0.0.1:0"}).tlsConfig(log)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	hs := secureHTTPServer(tb.Context(), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), tlsCfg, log)
	served := make(chan error, 1)
	go func() { served <- hs.ServeTLS(ln, "", "") }()
	tb.Cleanup(func() {
		_ = hs.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("ServeTLS: %v", err)
		}
	})
	leaf, err := x509.ParseCertificate(tlsCfg.Certificates[0].Certificate[0])
	if err != nil {
		tb.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	hc := &http.Client{Timeout: fuzzConnDeadline, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
	}}
	return ln.Addr().String(), hc
}

// clientHello returns the first flight a Go TLS client sends: its
// ClientHello record(s), captured from a connection that answers nothing.
func clientHello(tb testing.TB) []byte {
	tb.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		c := tls.Client(client, &tls.Config{ServerName: "localhost", MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}})
		_ = c.Handshake()
		client.Close()
	}()
	buf := make([]byte, 64<<10)
	_ = server.SetReadDeadline(time.Now().Add(fuzzConnDeadline))
	n, err := server.Read(buf)
	if err != nil {
		tb.Fatalf("capturing a ClientHello: %v", err)
	}
	return bytes.Clone(buf[:n])
}

// FuzzSecureListenerHandshake sends arbitrary bytes as a client's first
// flight to the secure listener, then ends the client's side. The server
// must not panic, must close that connection within fuzzConnDeadline, and
// must go on serving a well-formed TLS request. The seeds are a real
// ClientHello, pieces and corruptions of it, plain HTTP, and records whose
// headers lie about their length; under plain go test only they run.
func FuzzSecureListenerHandshake(f *testing.F) {
	addr, hc := secureListenerForFuzz(f)
	hello := clientHello(f)
	f.Add([]byte{})
	f.Add(hello)
	f.Add(hello[:5])               // the record header alone
	f.Add(hello[:len(hello)/2])    // a cut ClientHello
	f.Add(append(hello, hello...)) // two, back to back
	flipped := bytes.Clone(hello)
	flipped[len(flipped)/3] ^= 0xff
	f.Add(flipped)
	f.Add([]byte{0x16, 0x03, 0x01, 0xff, 0xff, 0x01})                   // a handshake record claiming 64 KiB
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xff, 0xff, 0xff}) // a ClientHello claiming 16 MiB
	f.Add([]byte{0x80, 0x2e, 0x01, 0x00, 0x02})                         // an SSLv2 ClientHello's start
	f.Add([]byte("GET /api HTTP/1.1\r\nHost: localhost\r\n\r\n"))       // plain HTTP on the TLS port
	f.Add([]byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28})             // an alert first

	f.Fuzz(func(t *testing.T, data []byte) {
		conn, err := net.DialTimeout("tcp", addr, fuzzConnDeadline)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(fuzzConnDeadline))
		// The server may close before taking all of it: that is an answer.
		_, _ = conn.Write(data)
		_ = conn.(*net.TCPConn).CloseWrite()
		if _, err := io.Copy(io.Discard, conn); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the server held the connection %s after a first flight of %d bytes ended", fuzzConnDeadline, len(data))
		}

		resp, err := hc.Get("https://" + addr + "/")
		if err != nil {
			t.Fatalf("a well-formed request after a first flight of %d bytes: %v", len(data), err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "ok" {
			t.Fatalf("a well-formed request after a first flight of %d bytes: %d %q", len(data), resp.StatusCode, body)
		}
	})
}
