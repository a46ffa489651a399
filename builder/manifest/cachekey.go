package manifest

import (
	"crypto/sha256"
	"encoding/hex"
)

// osbuild's stage ID leaves devices out: two stages that differ only in
// their devices (mkfs on another offset of disk.img, or on another file)
// get one ID, and a cache keyed by it hands the second the first one's
// tree. forge stores a stage's tree under its CacheKey instead, which is
// its ID wherever the ID tells the trees apart (no devices in the stage
// nor in anything it builds on: every format-1 stage, and most format-2
// ones, so that refs keep osbuild's IDs), and otherwise a hash of the ID,
// the devices and the keys of what the stage builds on, so that the
// difference carries down the pipeline, to the pipelines built with this
// one and to those that take its tree.

// cacheKeyVersion starts every derived key: a change of the recipe must
// not meet keys of the old one.
const cacheKeyVersion = "forge cache key 1\x00"

// TreeKey is the CacheKey of the pipeline's last stage, "" without stages.
func (p *Pipeline) TreeKey() string {
	if len(p.Stages) == 0 {
		return ""
	}
	return p.Stages[len(p.Stages)-1].CacheKey
}

// buildKey is the TreeKey of the build pipeline, "" for the host.
func (p *Pipeline) buildKey() string {
	if p.Build == nil {
		return ""
	}
	return p.Build.Pipeline.TreeKey()
}

// computeCacheKeys sets every stage's CacheKey, pipelines in manifest
// order (what a pipeline builds on comes before it).
func computeCacheKeys(pipelines []*Pipeline) {
	for _, p := range pipelines {
		buildKey := p.buildKey()
		baseID, baseKey := "", ""
		for _, s := range p.Stages {
			s.CacheKey = stageCacheKey(s, p.BuildID(), buildKey, baseID, baseKey)
			baseID, baseKey = s.ID, s.CacheKey
		}
		if p.Assembler != nil { // format 1: no devices anywhere
			p.Assembler.CacheKey = p.Assembler.ID
		}
	}
}

func stageCacheKey(s *Stage, buildID, buildKey, baseID, baseKey string) string {
	same := len(s.Devices) == 0 && buildKey == buildID && baseKey == baseID
	for _, in := range s.Inputs {
		for _, r := range in.References {
			if r.Pipeline != nil && r.Pipeline.TreeKey() != r.ID {
				same = false
			}
		}
	}
	if same {
		return s.ID
	}
	h := sha256.New()
	field := func(s string) { h.Write([]byte(s)); h.Write([]byte{0}) }
	h.Write([]byte(cacheKeyVersion))
	field(s.ID)
	field(buildKey)
	field(baseKey)
	for _, in := range s.Inputs {
		field("input " + in.Name)
		for _, r := range in.References {
			if r.Pipeline != nil {
				field(r.Pipeline.TreeKey())
			} else {
				field(r.ID)
			}
		}
	}
	for _, d := range s.Devices {
		// The name counts: the stage finds its devices by name.
		field("device " + d.Name)
		field(d.ID)
	}
	return hex.EncodeToString(h.Sum(nil))
}
