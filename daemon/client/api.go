// Package client talks to forge's store daemon (package daemon): the wire
// types of its API, the client, and Connect, which starts a daemon when none
// answers. It is apart from the server, as containerd's content proxy is
// apart from its store, so that a client (the builder, forge's commands)
// compiles against neither FUSE nor overlayfs.
//
// One daemon per store owns the index and the packs (pebble lets one process
// open them) and serves every FUSE mount of the store; forge commands are its
// clients, over HTTP/JSON on the Unix socket <store>/forge.sock.
//
// Every call is a POST to /v1/<op> with a JSON body. The answer is a stream
// of JSON lines (events): any number of progress or item events, then one
// result or one error. Streaming the answer lets long calls (import, fsck)
// report progress, and lets the daemon notice a client that went away: its
// request's context ends, and the work stops.
package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/forge-build/forge/cas/errdefs"
)

// Socket, lock and log names inside a store directory.
const (
	SocketName = "forge.sock"
	lockName   = "daemon.lock"
	logName    = "daemon.log"
	// RunsDirName is the directory of a store under which forge runs and
	// builds make the mountpoints of their trees (package builder/runs):
	// the one place inside a store where the daemon mounts what clients
	// ask.
	RunsDirName = "buildroots"
)

// Event is one line of an answer.
type Event struct {
	Progress *Progress       `json:"progress,omitempty"`
	Item     json.RawMessage `json:"item,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    *WireError      `json:"error,omitempty"`
}

// WireError carries an error across the socket with its kind, so that the
// client can still test it with errors.Is.
type WireError struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// Error kinds.
const (
	kindNotFound = "not_found"
	kindInvalid  = "invalid_argument"
	kindInUse    = "in_use"
	kindCorrupt  = "corrupt"
	kindBusy     = "busy"
	kindDenied   = "permission_denied"
	kindOther    = "error"
)

func ToWire(err error) *WireError {
	kind := kindOther
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		kind = kindNotFound
	case errors.Is(err, errdefs.ErrInvalidArgument):
		kind = kindInvalid
	case errors.Is(err, errdefs.ErrInUse):
		kind = kindInUse
	case errors.Is(err, errdefs.ErrCorrupt):
		kind = kindCorrupt
	case errors.Is(err, syscall.EBUSY):
		kind = kindBusy
	case errors.Is(err, ErrDenied):
		kind = kindDenied
	}
	return &WireError{Kind: kind, Message: err.Error()}
}

var ErrDenied = errors.New("permission denied")

// RemoteError is an error the daemon answered with.
type RemoteError struct {
	Kind    string
	Message string
}

func (e *RemoteError) Error() string { return e.Message }

// Is lets callers test a remote error against the local sentinels.
func (e *RemoteError) Is(target error) bool {
	switch e.Kind {
	case kindNotFound:
		return target == errdefs.ErrNotFound
	case kindInvalid:
		return target == errdefs.ErrInvalidArgument
	case kindInUse:
		return target == errdefs.ErrInUse
	case kindCorrupt:
		return target == errdefs.ErrCorrupt
	case kindBusy:
		return target == syscall.EBUSY
	case kindDenied:
		return target == ErrDenied
	}
	return false
}

// Requests and results of each call.

// PingResult identifies the daemon.
type PingResult struct {
	PID   int       `json:"pid"`
	Store string    `json:"store"`
	Since time.Time `json:"since"`
}

// ImportRequest asks to store the tree at Path (absolute), with Refs
// pointed at it and SubRefs (ref → relative slash path) at directories
// inside it, in one commit (cas.ImportOptions).
type ImportRequest struct {
	Path    Path            `json:"path"`
	Refs    []string        `json:"refs,omitempty"`
	SubRefs map[string]Path `json:"sub_refs,omitempty"`
}

// Progress is cas.Progress on the wire: work done so far by an import or
// export.
type Progress struct {
	Entries  int64 // names scanned (push and pull: objects written, chunks read)
	Bytes    int64 // file content read (or written, for export; moved, for push and pull)
	NewBytes int64 // content the store did not have
	// Phase and Total are set by push and pull: the step they are at, and
	// the bytes it is to move when known.
	Phase string `json:",omitempty"`
	Total int64  `json:",omitempty"`
}

// RemoteSpec is a bucket of an S3 object store and the credentials the
// client found for it. The daemon keeps them in memory for the one
// request: it never reads a caller's environment or files, and never
// writes credentials anywhere.
type RemoteSpec struct {
	// Name is the remote's name on this host, for messages.
	Name     string `json:"name"`
	Endpoint string `json:"endpoint,omitempty"`
	Region   string `json:"region,omitempty"`
	Bucket   string `json:"bucket"`
	Prefix   string `json:"prefix,omitempty"`
	// CACert is a PEM file of extra certificate authorities to trust.
	CACert          string `json:"ca_cert,omitempty"`
	AccessKeyID     string `json:"access_key_id,omitempty"`
	SecretAccessKey string `json:"secret_access_key,omitempty"`
	SessionToken    string `json:"session_token,omitempty"`
}

// PushRequest asks to copy Tree (a ref or hash) into the remote, then to
// point stages/ID for each of Stages and refs/NAME for each of Refs at it.
type PushRequest struct {
	Remote RemoteSpec `json:"remote"`
	Tree   string     `json:"tree"`
	Stages []string   `json:"stages,omitempty"`
	Refs   []string   `json:"refs,omitempty"`
}

// PushResult is remote.PushResult on the wire.
type PushResult struct {
	Tree        string            `json:"tree"`
	Chunks      int               `json:"chunks"`
	NewChunks   int               `json:"new_chunks"`
	NewBytes    int64             `json:"new_bytes"`
	Packs       int               `json:"packs"`
	PackBytes   int64             `json:"pack_bytes"`
	TreeWritten bool              `json:"tree_written"`
	Adopted     map[string]string `json:"adopted,omitempty"`
	Transfer    Transfer          `json:"transfer"`
	ElapsedSec  float64           `json:"elapsed_seconds"`
}

// PullRequest asks to copy what Name is in the remote (a stage ID, tree
// hash or ref) into the store under Refs (default: Name). With Stage,
// Name is only looked up as a stage ID, and one the bucket lacks is a
// not-found error.
type PullRequest struct {
	Remote RemoteSpec `json:"remote"`
	Name   string     `json:"name"`
	Refs   []string   `json:"refs,omitempty"`
	Stage  bool       `json:"stage,omitempty"`
}

// PullResult is remote.PullResult on the wire.
type PullResult struct {
	Tree        string   `json:"tree"`
	Kind        string   `json:"kind"` // what Name was: "stage", "tree" or "ref"
	Refs        []string `json:"refs"`
	Nodes       int      `json:"nodes"`
	Chunks      int      `json:"chunks"`
	Fetched     int      `json:"fetched"`
	FetchedSize int64    `json:"fetched_bytes"`
	Ranges      int      `json:"ranges"`
	Transfer    Transfer `json:"transfer"`
	ElapsedSec  float64  `json:"elapsed_seconds"`
}

// Transfer counts the requests an operation sent to the object store.
type Transfer struct {
	Requests  int64 `json:"requests"`
	Gets      int64 `json:"gets"`
	Puts      int64 `json:"puts"`
	BytesDown int64 `json:"bytes_down"`
	BytesUp   int64 `json:"bytes_up"`
}

// ImportResult is cas.ImportResult on the wire.
type ImportResult struct {
	Tree       string  `json:"tree"`
	Entries    int64   `json:"entries"`
	Bytes      int64   `json:"bytes"`
	Reused     int64   `json:"reused_bytes"`
	NewBytes   int64   `json:"new_bytes"`
	NewChunks  int     `json:"new_chunks"`
	NewNodes   int     `json:"new_nodes"`
	ElapsedSec float64 `json:"elapsed_seconds"`
}

// StreamRequest asks for Tree (a ref or hash) as a treestream.
type StreamRequest struct {
	Tree string `json:"tree"`
}

// StreamContentType is the content type of a tree stream's answer; any
// other answer is one JSON event with the error.
const StreamContentType = "application/x-forge-treestream"

// ExportRequest asks to recreate Tree (a ref or hash) at Path (absolute).
type ExportRequest struct {
	Tree string `json:"tree"`
	Path Path   `json:"path"`
}

// ExportResult is cas.ExportResult on the wire.
type ExportResult struct {
	Entries    int64   `json:"entries"`
	Bytes      int64   `json:"bytes"`
	ElapsedSec float64 `json:"elapsed_seconds"`
}

// RefsRequest asks for the store's refs. NamesOnly leaves the sizes out
// (LogicalBytes, UniqueBytes zero), which costs a walk of every stored
// tree: a build that only asks which stage IDs are stored wants the names.
// A daemon that predates the field ignores it and sends the sizes.
type RefsRequest struct {
	NamesOnly bool `json:"names_only,omitempty"`
}

// RefInfo is one ref with its cost.
type RefInfo struct {
	Name         string    `json:"name"`
	Tree         string    `json:"tree"`
	LogicalBytes int64     `json:"logical_bytes"`
	UniqueBytes  int64     `json:"unique_bytes"`
	LastUsed     time.Time `json:"last_used"`
	// Unreadable says why the tree could not be walked (sizes unknown).
	Unreadable string `json:"unreadable,omitempty"`
}

// RemoveRequest drops refs.
type RemoveRequest struct {
	Refs []string `json:"refs"`
}

// UsageResult is cas.Usage on the wire.
type UsageResult struct {
	LogicalBytes int64   `json:"logical_bytes"`
	StoredBytes  int64   `json:"stored_bytes"`
	PackBytes    int64   `json:"pack_bytes"`
	Chunks       int64   `json:"chunks"`
	Nodes        int64   `json:"nodes"`
	Packs        int64   `json:"packs"`
	Refs         int64   `json:"refs"`
	DedupRatio   float64 `json:"dedup_ratio"`
}

// DiffRequest compares two trees (refs or hashes).
type DiffRequest struct {
	A string `json:"a"`
	B string `json:"b"`
}

// Change is one line of a diff.
type Change struct {
	Op   string `json:"op"`
	Path Path   `json:"path"`
}

// GCRequest is cas.GCOptions on the wire.
type GCRequest struct {
	MaxSize int64 `json:"max_size,omitempty"`
	DryRun  bool  `json:"dry_run,omitempty"`
}

// GCResult is cas.GCResult on the wire.
type GCResult struct {
	DroppedRefs    []string `json:"dropped_refs"`
	Nodes          int      `json:"nodes"`
	Chunks         int      `json:"chunks"`
	ChunkBytes     int64    `json:"chunk_bytes"`
	PacksDeleted   int      `json:"packs_deleted"`
	PacksRewritten int      `json:"packs_rewritten"`
	OrphanPacks    int      `json:"orphan_packs"`
	FreedBytes     int64    `json:"freed_bytes"`
}

// FsckRequest is cas.FsckOptions on the wire.
type FsckRequest struct {
	Repair bool `json:"repair,omitempty"`
}

// FsckResult is cas.FsckResult on the wire.
type FsckResult struct {
	Problems     []string `json:"problems"`
	Repaired     []string `json:"repaired"`
	Chunks       int      `json:"chunks"`
	Nodes        int      `json:"nodes"`
	Packs        int      `json:"packs"`
	Refs         int      `json:"refs"`
	GarbagePacks int      `json:"garbage_packs"`
	GarbageNodes int      `json:"garbage_nodes"`
}

// MountRequest mounts Tree (a ref or hash) at Mountpoint (absolute):
// read-only, or with Writable a copy-on-write view (Tree may then be empty:
// an empty tree). Every mount is nosuid,nodev unless BuildRoot asks for
// suid and dev, as a buildroot's trees need (sudo, device nodes that
// debootstrap makes): such a mount belongs where only root can go.
// Mountpoint must be outside the store (CheckMountpoint).
//
// With Compose (and neither Tree nor Writable), the daemon mounts,
// read-only, a new tree made of the entries (cas.Store.Compose): nodes of
// stored trees under new names, no content copied. The tree has no ref;
// the mount holds it, and GC frees it once unmounted. A missing tree or
// path is a not-found error, a bad, repeated or clashing name an invalid
// argument; both name the entry.
type MountRequest struct {
	Tree       string         `json:"tree,omitempty"`
	Mountpoint Path           `json:"mountpoint"`
	Writable   bool           `json:"writable,omitempty"`
	BuildRoot  bool           `json:"build_root,omitempty"`
	Compose    []ComposeEntry `json:"compose,omitempty"`
	// Remote mounts Tree (a stage ID, tree hash or ref of the bucket)
	// from a remote, read-only and lazily: chunks are fetched on first
	// read, verified, and kept in the store.
	Remote *RemoteSpec `json:"remote,omitempty"`
}

// MarshalJSON implements json.Marshaler: as the struct, but an empty
// (non-nil) Compose, an empty composed tree, goes on the wire as [], which
// omitempty would drop. A request without Compose carries no "compose" key,
// so that a daemon that predates it still takes it.
func (r MountRequest) MarshalJSON() ([]byte, error) {
	type plain MountRequest
	if r.Compose == nil || len(r.Compose) > 0 {
		return json.Marshal(plain(r))
	}
	return json.Marshal(struct {
		plain
		Compose []ComposeEntry `json:"compose"`
	}{plain(r), r.Compose})
}

// ComposeEntry is one name of a composed mount: the node at Path in the
// stored tree Tree (a ref or hash; Path "" or "/" for its root), at Name, a
// relative slash path in the new tree (directories above it that no entry
// names are made 0755, root:root). Name and Path are Paths: bytes, not
// only UTF-8.
type ComposeEntry struct {
	Name Path   `json:"name"`
	Tree string `json:"tree"`
	Path Path   `json:"path,omitempty"`
}

// CommitRequest stores what a writable mount holds now.
type CommitRequest struct {
	Mountpoint Path     `json:"mountpoint"`
	Refs       []string `json:"refs,omitempty"`
	// ClampMtime, when set, is a time in seconds since the epoch that no
	// stored modification time of what this commit writes may exceed:
	// later ones are stored as it (SOURCE_DATE_EPOCH's "clamping", as
	// tar --clamp-mtime does). It makes two builds of one pipeline with a
	// source-epoch store the same tree, though the stages ran at
	// different times. Only what the commit stores anew is clamped, so
	// a tree's unchanged part keeps its times; the mount's own files keep
	// theirs until it is unmounted.
	ClampMtime *int64 `json:"clamp_mtime,omitempty"`
}

// CommitResult is the committed tree.
type CommitResult struct {
	Tree       string  `json:"tree"`
	ElapsedSec float64 `json:"elapsed_seconds"`
}

// MountInfo describes a mount the daemon serves.
type MountInfo struct {
	Mountpoint Path   `json:"mountpoint"`
	Tree       string `json:"tree"`
	Name       string `json:"name,omitempty"` // the ref it was mounted by, if any
	Writable   bool   `json:"writable"`
	// Kind says how a writable mount keeps its changes: "overlay" (the
	// kernel's overlayfs over the stored tree) or "fuse" (forge's own
	// copy-on-write filesystem, where overlayfs cannot be used).
	Kind    string    `json:"kind,omitempty"`
	Created time.Time `json:"created"`
}

// UnmountRequest detaches a mount; Lazy detaches even when busy.
type UnmountRequest struct {
	Mountpoint Path `json:"mountpoint"`
	Lazy       bool `json:"lazy,omitempty"`
}

// Path is a file path on the wire. Linux paths are bytes, and JSON strings
// must be UTF-8 (encoding/json would replace invalid bytes), so a path
// that is not valid UTF-8 travels as {"base64": "..."}; every other path
// as a plain string.
type Path string

// MarshalJSON implements json.Marshaler.
func (p Path) MarshalJSON() ([]byte, error) {
	if utf8.ValidString(string(p)) {
		return json.Marshal(string(p))
	}
	return json.Marshal(struct {
		Base64 []byte `json:"base64"`
	}{[]byte(p)})
}

// UnmarshalJSON implements json.Unmarshaler.
func (p *Path) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*p = Path(s)
		return nil
	}
	var raw struct {
		Base64 []byte `json:"base64"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("path: want a string or {\"base64\": ...}: %w", err)
	}
	*p = Path(raw.Base64)
	return nil
}

func errorf(kind, format string, args ...any) error {
	return &RemoteError{Kind: kind, Message: fmt.Sprintf(format, args...)}
}
