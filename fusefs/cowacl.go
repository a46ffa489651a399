package fusefs

import (
	"encoding/binary"
)

// POSIX ACLs are xattrs in the kernel's binary form (a version word, then
// entries of tag, permissions and id). With FUSE_POSIX_ACL the kernel checks
// them, but the filesystem keeps them in step with the mode, as ext4 does:
// chmod rewrites the owner, mask (or group) and other entries, and a new
// node inherits its directory's default ACL instead of being masked by the
// umask.
const (
	aclAccess  = "system.posix_acl_access"
	aclDefault = "system.posix_acl_default"

	aclVersion  = 2
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
)

type aclEntry struct {
	tag, perm uint16
	id        uint32
}

func parseACL(b []byte) ([]aclEntry, bool) {
	if len(b) < 4 || (len(b)-4)%8 != 0 || binary.LittleEndian.Uint32(b) != aclVersion {
		return nil, false
	}
	var es []aclEntry
	for p := b[4:]; len(p) > 0; p = p[8:] {
		es = append(es, aclEntry{
			tag:  binary.LittleEndian.Uint16(p),
			perm: binary.LittleEndian.Uint16(p[2:]),
			id:   binary.LittleEndian.Uint32(p[4:]),
		})
	}
	return es, true
}

func encodeACL(es []aclEntry) []byte {
	b := make([]byte, 4+8*len(es))
	binary.LittleEndian.PutUint32(b, aclVersion)
	for i, e := range es {
		p := b[4+8*i:]
		binary.LittleEndian.PutUint16(p, e.tag)
		binary.LittleEndian.PutUint16(p[2:], e.perm)
		binary.LittleEndian.PutUint32(p[4:], e.id)
	}
	return b
}

// chmodACL brings n's access ACL in line with a new mode (posix_acl_chmod);
// fsys.mu is held.
func (n *cowNode) chmodACL() {
	v, ok := n.meta.Xattr(aclAccess)
	if !ok {
		return
	}
	es, ok := parseACL(v)
	if !ok {
		return
	}
	mode := n.meta.Perm
	hasMask := false
	for _, e := range es {
		if e.tag == aclMask {
			hasMask = true
		}
	}
	for i := range es {
		switch es[i].tag {
		case aclUserObj:
			es[i].perm = uint16(mode>>6) & 7
		case aclMask:
			es[i].perm = uint16(mode>>3) & 7
		case aclGroupObj:
			if !hasMask {
				es[i].perm = uint16(mode>>3) & 7
			}
		case aclOther:
			es[i].perm = uint16(mode) & 7
		}
	}
	n.setXattr(aclAccess, encodeACL(es))
}

// inheritACL applies directory parent's default ACL to new node child
// created with mode (posix_acl_create): it returns the mode the child
// gets, and sets the child's ACLs. Without a default ACL the umask applies.
func inheritACL(parent, child *cowNode, mode, umask uint32, isDir bool) uint32 {
	v, ok := parent.meta.Xattr(aclDefault)
	if !ok {
		return mode &^ umask
	}
	es, ok := parseACL(v)
	if !ok {
		return mode &^ umask
	}
	if isDir {
		child.setXattr(aclDefault, append([]byte(nil), v...))
	}
	var groupObj, mask = -1, -1
	extended := false
	for i := range es {
		e := &es[i]
		switch e.tag {
		case aclUserObj:
			e.perm &= uint16(mode>>6) & 7
			mode &= uint32(e.perm)<<6 | ^uint32(0o700)
		case aclUser, aclGroup:
			extended = true
		case aclGroupObj:
			groupObj = i
		case aclMask:
			extended = true
			mask = i
		case aclOther:
			e.perm &= uint16(mode) & 7
			mode &= uint32(e.perm) | ^uint32(0o7)
		}
	}
	if mask >= 0 {
		es[mask].perm &= uint16(mode>>3) & 7
		mode &= uint32(es[mask].perm)<<3 | ^uint32(0o70)
	} else if groupObj >= 0 {
		es[groupObj].perm &= uint16(mode>>3) & 7
		mode &= uint32(es[groupObj].perm)<<3 | ^uint32(0o70)
	}
	if extended {
		child.setXattr(aclAccess, encodeACL(es))
	}
	return mode
}

// aclMode returns the permission bits an access ACL stands for, and
// whether it says more than they can (named entries or a mask).
func aclMode(es []aclEntry) (uint32, bool) {
	var user, group, mask, other uint32
	hasMask, extended := false, false
	for _, e := range es {
		p := uint32(e.perm) & 7
		switch e.tag {
		case aclUserObj:
			user = p
		case aclGroupObj:
			group = p
		case aclMask:
			mask, hasMask, extended = p, true, true
		case aclOther:
			other = p
		case aclUser, aclGroup:
			extended = true
		}
	}
	if hasMask {
		group = mask
	}
	return user<<6 | group<<3 | other, extended
}
