package bundleendpoint

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/profile"
)

// A raw HTTP/2 client, byte by byte as RFC 9113 lays frames out, so that
// tests can send what no well-behaved client would.

// Frame types and flags (RFC 9113, section 6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePing         = 0x6
	frameGoAway       = 0x7
	frameContinuation = 0x9
	frameUnknown      = 0x20 // no such type: receivers ignore it

	flagAck        = 0x1
	flagEndStream  = 0x1
	flagEndHeaders = 0x4
)

// Settings (RFC 9113, section 6.5.2) and error codes (section 7).
const (
	settingMaxConcurrentStreams = 0x3
	settingInitialWindowSize    = 0x4
	settingMaxFrameSize         = 0x5
	settingMaxHeaderListSize    = 0x6

	errCodeFrameSize = 0x6
)

const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func h2Frame(typ, flags byte, stream uint32, payload []byte) []byte {
	n := len(payload)
	f := []byte{byte(n >> 16), byte(n >> 8), byte(n), typ, flags, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(f[5:], stream)
	return append(f, payload...)
}

// h2Conn is a TLS connection that negotiated h2, with its preface sent.
type h2Conn struct {
	*tls.Conn
	// settings are the server's, as first sent.
	settings map[uint16]uint32
}

// dialH2 connects, negotiates h2, sends the preface and an empty SETTINGS
// frame, and reads the server's SETTINGS.
func dialH2(t testing.TB, addr string) *h2Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := &tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}} //nolint:gosec // the framing is under test, not the certificate
	nc, err := d.DialContext(ctx, "tcp", addr)
	require.NoError(t, err)
	conn := &h2Conn{Conn: nc.(*tls.Conn), settings: map[uint16]uint32{}}
	require.Equal(t, "h2", conn.ConnectionState().NegotiatedProtocol)
	conn.write(t, append([]byte(clientPreface), h2Frame(frameSettings, 0, 0, nil)...))
	f, err := conn.readFrame(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, byte(frameSettings), f.typ, "the server speaks first with its SETTINGS")
	for i := 0; i+6 <= len(f.payload); i += 6 {
		conn.settings[binary.BigEndian.Uint16(f.payload[i:])] = binary.BigEndian.Uint32(f.payload[i+2:])
	}
	return conn
}

func (c *h2Conn) write(t testing.TB, b []byte) {
	t.Helper()
	require.NoError(t, c.SetWriteDeadline(time.Now().Add(5*time.Second)))
	_, err := c.Write(b)
	require.NoError(t, err)
}

// frame is one frame read.
type frame struct {
	typ, flags byte
	stream     uint32
	payload    []byte
}

// readFrame reads one frame within d.
func (c *h2Conn) readFrame(d time.Duration) (frame, error) {
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		return frame{}, err
	}
	var hdr [9]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return frame{}, err
	}
	f := frame{typ: hdr[3], flags: hdr[4], stream: binary.BigEndian.Uint32(hdr[5:]) & 0x7fffffff}
	f.payload = make([]byte, int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
	if _, err := io.ReadFull(c, f.payload); err != nil {
		return frame{}, err
	}
	return f, nil
}

// errGoAway is a GOAWAY frame received, with its error code.
type errGoAway uint32

func (e errGoAway) Error() string { return fmt.Sprintf("GOAWAY with error code %#x", uint32(e)) }

// ping sends a PING and reads until its ACK, within 5 seconds: once it is
// back, the server has processed every frame sent before it. A GOAWAY
// comes back as errGoAway.
func (c *h2Conn) ping(t testing.TB) error {
	t.Helper()
	c.write(t, h2Frame(framePing, 0, 0, []byte("treaty!!")))
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, err := c.readFrame(time.Until(deadline))
		switch {
		case err != nil:
			return err
		case f.typ == frameGoAway:
			return errGoAway(binary.BigEndian.Uint32(f.payload[4:]))
		case f.typ == framePing && f.flags&flagAck != 0:
			return nil
		}
	}
}

// waitClosed reads until the server closes the connection, within d, and
// returns the first GOAWAY seen, if any.
func (c *h2Conn) waitClosed(d time.Duration) (*errGoAway, error) {
	deadline := time.Now().Add(d)
	var goAway *errGoAway
	for {
		f, err := c.readFrame(time.Until(deadline))
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) {
			return goAway, nil
		}
		if err != nil {
			return goAway, err
		}
		if f.typ == frameGoAway && goAway == nil {
			e := errGoAway(binary.BigEndian.Uint32(f.payload[4:]))
			goAway = &e
		}
	}
}

// TestHTTP2Limits checks the HTTP/2 settings a client is held to: few
// streams, small windows, and no frame over 16 KiB, whose buffer the
// server would otherwise keep for the life of the connection.
func TestHTTP2Limits(t *testing.T) {
	c := newCA(t)
	_, url := serve(t, Config{Profile: profile.HTTPSSPIFFE, EndpointSPIFFEID: endpointID, SVIDSource: c, Source: c})
	addr := addrOf(url)

	conn := dialH2(t, addr)
	require.Equal(t, uint32(http2MaxConcurrentStreams), conn.settings[settingMaxConcurrentStreams])
	require.Equal(t, uint32(http2MaxReceiveStream), conn.settings[settingInitialWindowSize])
	if v, ok := conn.settings[settingMaxFrameSize]; ok { // 16 KiB is the protocol default: it may go unsaid
		require.Equal(t, uint32(http2MaxReadFrameSize), v)
	}

	tests := []struct {
		name  string
		frame int
		err   error
	}{
		{"ok/ignored frame of 16 KiB", http2MaxReadFrameSize, nil},
		{"fail/frame over 16 KiB", http2MaxReadFrameSize + 1, errGoAway(errCodeFrameSize)},
		{"fail/frame of 1 MiB", 1 << 20, errGoAway(errCodeFrameSize)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := dialH2(t, addr)
			defer conn.Close()
			// Past 16 KiB only the header is sent: the server must refuse
			// on the announced length, before reading any of it.
			frame := h2Frame(frameUnknown, 0, 0, make([]byte, tt.frame))
			conn.write(t, frame[:9+min(tt.frame, http2MaxReadFrameSize)])
			require.Equal(t, tt.err, conn.ping(t))
			if tt.err != nil {
				_, err := conn.waitClosed(5 * time.Second)
				require.NoError(t, err, "the server closes the connection")
			}
		})
	}
}
