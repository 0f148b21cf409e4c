package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Frame kinds. A frame is kind (1 byte), payload length (4 bytes, big
// endian) and the payload; see the package doc.
const (
	frameMsg  byte = 1 // payload: one protobuf-encoded raftpb.Message
	framePing byte = 2 // empty payload; sender to receiver
	framePong byte = 3 // empty payload; receiver to sender, one per ping

	frameHeaderLen = 5
)

// smallFrame is the largest payload a frameReader allocates up front.
// Larger payloads are read into a buffer that grows with the bytes that
// actually arrive, so a peer that claims a huge length and sends little
// costs little memory.
const smallFrame = 64 << 10

// keepBuffer is the largest read buffer a frameReader keeps for reuse.
const keepBuffer = 1 << 20

var (
	pingFrame = []byte{framePing, 0, 0, 0, 0}
	pongFrame = []byte{framePong, 0, 0, 0, 0}
)

// appendMsgFrame appends the frame of m to buf.
func appendMsgFrame(buf []byte, m *raftpb.Message) ([]byte, error) {
	start := len(buf)
	buf = append(buf, frameMsg, 0, 0, 0, 0)
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, m)
	if err != nil {
		return buf[:start], err
	}
	n := len(buf) - start - frameHeaderLen
	if uint64(n) > 1<<32-1 {
		return buf[:start], fmt.Errorf("%w: message of %d bytes", ErrFrameTooLarge, n)
	}
	binary.BigEndian.PutUint32(buf[start+1:], uint32(n))
	return buf, nil
}

// frameReader reads frames from a peer. It never trusts the length prefix:
// lengths above max are refused before anything is allocated, and large
// payloads are read incrementally.
type frameReader struct {
	r   *bufio.Reader
	max int
	hdr [frameHeaderLen]byte
	buf []byte
}

func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// next returns the next frame. The payload is valid until the following
// call. At a clean end of the stream (no byte of a new frame read) it
// returns io.EOF; a stream cut inside a frame is io.ErrUnexpectedEOF. A
// malformed frame is an error wrapping ErrBadFrame or ErrFrameTooLarge.
func (fr *frameReader) next() (kind byte, payload []byte, err error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return 0, nil, err
	}
	kind = fr.hdr[0]
	n := binary.BigEndian.Uint32(fr.hdr[1:])
	switch kind {
	case frameMsg:
		if n == 0 {
			return 0, nil, fmt.Errorf("%w: empty message frame", ErrBadFrame)
		}
		if uint64(n) > uint64(fr.max) {
			return 0, nil, fmt.Errorf("%w: frame of %d bytes, limit %d", ErrFrameTooLarge, n, fr.max)
		}
	case framePing, framePong:
		if n != 0 {
			return 0, nil, fmt.Errorf("%w: %s frame with a %d-byte payload", ErrBadFrame, kindName(kind), n)
		}
		return kind, nil, nil
	default:
		return 0, nil, fmt.Errorf("%w: unknown frame kind %d", ErrBadFrame, kind)
	}
	payload, err = fr.payload(int(n))
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return kind, payload, err
}

func (fr *frameReader) payload(n int) ([]byte, error) {
	if n <= cap(fr.buf) {
		b := fr.buf[:n]
		_, err := io.ReadFull(fr.r, b)
		return b, err
	}
	if n <= smallFrame {
		fr.buf = make([]byte, n, smallFrame)
		_, err := io.ReadFull(fr.r, fr.buf)
		return fr.buf, err
	}
	var bb bytes.Buffer
	bb.Grow(smallFrame)
	got, err := bb.ReadFrom(io.LimitReader(fr.r, int64(n)))
	if err != nil {
		return nil, err
	}
	if got < int64(n) {
		return nil, io.ErrUnexpectedEOF
	}
	b := bb.Bytes()
	if cap(b) <= keepBuffer {
		fr.buf = b
	}
	return b, nil
}

// decodeMsg decodes a frameMsg payload.
func decodeMsg(payload []byte) (*raftpb.Message, error) {
	m := new(raftpb.Message)
	if err := proto.Unmarshal(payload, m); err != nil {
		return nil, fmt.Errorf("%w: undecodable message: %v", ErrBadFrame, err)
	}
	return m, nil
}

func kindName(k byte) string {
	switch k {
	case frameMsg:
		return "message"
	case framePing:
		return "ping"
	case framePong:
		return "pong"
	}
	return fmt.Sprintf("kind-%d", k)
}
