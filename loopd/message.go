package loopd

import (
	"errors"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// message is one received datagram or packet with what came along with it.
// Whoever receives a message owns msg.fds and must close them: closeFDs.
type message struct {
	data []byte
	fds  []int
	// creds are the sender's credentials (SCM_CREDENTIALS), present on the
	// datagram socket, where SO_PASSCRED is set.
	creds *unix.Ucred
	// truncated: the message was longer than MaxMessageSize (MSG_TRUNC).
	truncated bool
	// tooManyFDs: more than MaxFDs fds were sent, or the control data did
	// not fit (MSG_CTRUNC: the kernel closed the fds that did not fit, or an
	// LSM refused to pass some).
	tooManyFDs bool
	from       *net.UnixAddr
}

// oobSize fits MaxFDs descriptors plus the sender's credentials. Without
// credentials a few more fds fit (and are refused); a larger control message
// is cut (MSG_CTRUNC) and the fds that do not fit are closed by the kernel.
var oobSize = unix.CmsgSpace(MaxFDs*4) + unix.CmsgSpace(unix.SizeofUcred)

// readMessage receives one message. Even when it returns an error the fds
// received, if any, are in msg.fds, for the caller to close.
func readMessage(c *net.UnixConn) (message, error) {
	buf := make([]byte, MaxMessageSize)
	oob := make([]byte, oobSize)
	n, oobn, flags, from, err := c.ReadMsgUnix(buf, oob)
	// On error the counts may be -1 (straight from recvmsg).
	n, oobn = max(n, 0), max(oobn, 0)
	msg := message{from: from}
	msg.fds, msg.creds = parseControl(oob[:oobn])
	msg.data = buf[:n]
	msg.truncated = flags&unix.MSG_TRUNC != 0
	msg.tooManyFDs = flags&unix.MSG_CTRUNC != 0 || len(msg.fds) > MaxFDs
	return msg, err
}

// parseControl extracts the fds and credentials from control data. It is
// tolerant by design: a malformed header ends the walk but never loses the
// fds already found, since those must be closed whatever happens.
func parseControl(oob []byte) (fds []int, creds *unix.Ucred) {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			break
		}
		data := oob[unix.CmsgLen(0):l]
		if h.Level == unix.SOL_SOCKET {
			switch h.Type {
			case unix.SCM_RIGHTS:
				for len(data) >= 4 {
					fds = append(fds, int(*(*int32)(unsafe.Pointer(&data[0]))))
					data = data[4:]
				}
			case unix.SCM_CREDENTIALS:
				if len(data) >= unix.SizeofUcred {
					c := *(*unix.Ucred)(unsafe.Pointer(&data[0]))
					creds = &c
				}
			}
		}
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return fds, creds
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// isClosed reports an error from using a connection or listener that was
// closed, by the peer or by us while shutting down.
func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed)
}
