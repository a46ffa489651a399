package fusefs

import (
	"bytes"
	"testing"

	"github.com/forge-build/forge/cas/node"
)

func acl(es ...aclEntry) []byte { return encodeACL(es) }

func TestSplitUmask(t *testing.T) {
	for _, tc := range []struct{ mode, umask uint32 }{{0o644, 0o022}, {0o100777, 0}, {0o20666, 0o777}} {
		mode, umask, ok := splitUmask(withUmask(tc.mode, tc.umask))
		if !ok || mode != tc.mode || umask != tc.umask {
			t.Errorf("withUmask(%o, %o) splits into %o, %o, %v", tc.mode, tc.umask, mode, umask, ok)
		}
	}
	if _, _, ok := splitUmask(0o644); ok {
		t.Errorf("a mode without umask says it has one")
	}
}

func TestInheritACL(t *testing.T) {
	def := acl(
		aclEntry{tag: aclUserObj, perm: 7}, aclEntry{tag: aclUser, perm: 6, id: 1234},
		aclEntry{tag: aclGroupObj, perm: 4}, aclEntry{tag: aclMask, perm: 6}, aclEntry{tag: aclOther, perm: 0},
	)
	minimal := acl(aclEntry{tag: aclUserObj, perm: 6}, aclEntry{tag: aclGroupObj, perm: 4}, aclEntry{tag: aclOther, perm: 4})
	for _, tc := range []struct {
		name             string
		dflt             []byte
		mode, umask      uint32
		dir              bool
		want             uint32
		access, inherits bool
	}{
		{"no default ACL: the umask applies", nil, 0o666, 0o022, false, 0o644, false, false},
		{"default ACL: no umask, masked by the ACL", def, 0o666, 0o022, false, 0o660, true, false},
		{"default ACL on a directory is inherited", def, 0o777, 0o077, true, 0o760, true, true},
		{"minimal default ACL gives no access ACL", minimal, 0o777, 0o022, false, 0o644, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := &cowNode{meta: node.Node{Type: node.TypeDir}}
			if tc.dflt != nil {
				parent.setXattr(aclDefault, tc.dflt)
			}
			child := &cowNode{}
			if got := inheritACL(parent, child, tc.mode, tc.umask, tc.dir); got != tc.want {
				t.Errorf("mode %o, want %o", got, tc.want)
			}
			if _, ok := child.meta.Xattr(aclAccess); ok != tc.access {
				t.Errorf("access ACL: %v, want %v", ok, tc.access)
			}
			if v, ok := child.meta.Xattr(aclDefault); ok != tc.inherits || ok && !bytes.Equal(v, tc.dflt) {
				t.Errorf("default ACL: %v, want %v", ok, tc.inherits)
			}
		})
	}
}

func TestChmodACL(t *testing.T) {
	n := &cowNode{meta: node.Node{Type: node.TypeRegular, Perm: 0o640}}
	n.setXattr(aclAccess, acl(aclEntry{tag: aclUserObj, perm: 6}, aclEntry{tag: aclUser, perm: 7, id: 5},
		aclEntry{tag: aclGroupObj, perm: 4}, aclEntry{tag: aclMask, perm: 7}, aclEntry{tag: aclOther, perm: 0}))
	n.meta.Perm = 0o751
	n.chmodACL()
	v, _ := n.meta.Xattr(aclAccess)
	es, ok := parseACL(v)
	if !ok {
		t.Fatal("ACL does not parse after chmod")
	}
	want := map[uint16]uint16{aclUserObj: 7, aclUser: 7, aclGroupObj: 4, aclMask: 5, aclOther: 1}
	for _, e := range es {
		if want[e.tag] != e.perm {
			t.Errorf("entry %#x: perm %o, want %o", e.tag, e.perm, want[e.tag])
		}
	}
}

func TestSetXattrKeepsOrder(t *testing.T) {
	n := &cowNode{}
	for _, name := range []string{"user.b", "user.a", "user.c", "user.b"} {
		n.setXattr(name, []byte(name))
	}
	if !n.removeXattr("user.c") || n.removeXattr("user.c") {
		t.Errorf("removeXattr does not report what it removed")
	}
	got := n.meta
	got.Type, got.Nlink = node.TypeFIFO, 1
	if err := got.Validate(); err != nil || len(got.Xattrs) != 2 || got.Xattrs[0].Name != "user.a" {
		t.Errorf("xattrs %v: %v", got.Xattrs, err)
	}
}
