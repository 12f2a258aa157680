package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// store keeps volumes and snapshots under one root directory:
//
//	volumes/ID/        a Filesystem volume's data
//	volumes/ID.img     a Block volume's sparse image (attached to a loop device when published)
//	volumes/ID.json    the volume's metadata
//	snapshots/ID/      a snapshot of a Filesystem volume (or snapshots/ID.img of a Block one)
//	snapshots/ID.json  the snapshot's metadata
//
// Every copy (clone, snapshot, restore) is a full copy, so no two objects
// share data and deleting one never affects another.
type store struct {
	root string
	mu   sync.Mutex
}

// meta describes a volume or a snapshot.
type meta struct {
	// Capacity in bytes (for a snapshot: of the volume it was taken of).
	Capacity int64 `json:"capacity"`
	Block    bool  `json:"block"`
	// Source names what a snapshot was taken of.
	Source  string    `json:"source,omitempty"`
	Created time.Time `json:"created"`
	// Loop is the loop device a published Block volume is attached to.
	Loop string `json:"loop,omitempty"`
}

// source is what a new volume starts as a copy of.
type source struct {
	volume   string
	snapshot string
}

// ids are names the sidecars and the provisioner choose ("pvc-UID",
// "snapshot-UID"); anything else could escape the root.
var validID = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$`)

func openStore(root string) (*store, error) {
	for _, dir := range []string{"volumes", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			return nil, err
		}
	}
	return &store{root: root}, nil
}

func (s *store) path(kind, id, suffix string) (string, error) {
	if !validID.MatchString(id) {
		return "", fmt.Errorf("invalid %s id %q", strings.TrimSuffix(kind, "s"), id)
	}
	return filepath.Join(s.root, kind, id+suffix), nil
}

func (s *store) readMeta(kind, id string) (meta, error) {
	var m meta
	path, err := s.path(kind, id, ".json")
	if err != nil {
		return m, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(data, &m)
}

func (s *store) writeMeta(kind, id string, m meta) error {
	path, err := s.path(kind, id, ".json")
	if err != nil {
		return err
	}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// dataPath is where the data of a volume or snapshot lives.
func (s *store) dataPath(kind, id string, block bool) (string, error) {
	if block {
		return s.path(kind, id, ".img")
	}
	return s.path(kind, id, "")
}

// volume returns a volume's metadata, or os.ErrNotExist.
func (s *store) volume(id string) (meta, error) {
	return s.readMeta("volumes", id)
}

// createVolume makes volume id of capacity bytes, empty or as a copy of
// from. It is idempotent: an existing volume is left as it is.
func (s *store) createVolume(id string, capacity int64, block bool, from source) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.readMeta("volumes", id); err == nil {
		return nil
	}
	data, err := s.dataPath("volumes", id, block)
	if err != nil {
		return err
	}
	// A half-made volume from a crash is made again from scratch.
	if err := os.RemoveAll(data); err != nil {
		return err
	}
	var copyFrom string
	switch {
	case from.volume != "":
		src, err := s.readMeta("volumes", from.volume)
		if err != nil {
			return fmt.Errorf("clone source %s: %w", from.volume, err)
		}
		if src.Block != block {
			return fmt.Errorf("clone source %s has the other volume mode", from.volume)
		}
		copyFrom, _ = s.dataPath("volumes", from.volume, block)
	case from.snapshot != "":
		src, err := s.readMeta("snapshots", from.snapshot)
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", from.snapshot, err)
		}
		if src.Block != block {
			return fmt.Errorf("snapshot %s is of the other volume mode", from.snapshot)
		}
		copyFrom, _ = s.dataPath("snapshots", from.snapshot, block)
	}
	switch {
	case copyFrom != "":
		if err := copyData(copyFrom, data, block); err != nil {
			return err
		}
	case block:
		f, err := os.OpenFile(data, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		f.Close()
	default:
		if err := os.Mkdir(data, 0o755); err != nil {
			return err
		}
	}
	if block {
		// A restored image may be smaller than the new volume: grow it
		// (sparse), as a real driver grows the device.
		if info, err := os.Stat(data); err != nil {
			return err
		} else if info.Size() < capacity {
			if err := os.Truncate(data, capacity); err != nil {
				return err
			}
		}
	}
	return s.writeMeta("volumes", id, meta{Capacity: capacity, Block: block, Created: time.Now()})
}

// deleteVolume removes volume id, detaching its loop device; a missing
// volume is not an error.
func (s *store) deleteVolume(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.readMeta("volumes", id)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if m.Loop != "" {
		if err := detachLoop(m.Loop); err != nil {
			return err
		}
	}
	data, _ := s.dataPath("volumes", id, m.Block)
	if err := os.RemoveAll(data); err != nil {
		return err
	}
	metaPath, _ := s.path("volumes", id, ".json")
	return os.Remove(metaPath)
}

// snapshot copies volume to snapshot id (idempotent) and returns its
// metadata.
func (s *store) snapshot(volume, id string) (meta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, err := s.readMeta("snapshots", id); err == nil {
		if m.Source != volume {
			return m, fmt.Errorf("snapshot %s already exists of volume %s", id, m.Source)
		}
		return m, nil
	}
	src, err := s.readMeta("volumes", volume)
	if err != nil {
		return meta{}, fmt.Errorf("volume %s: %w", volume, err)
	}
	from, _ := s.dataPath("volumes", volume, src.Block)
	to, err := s.dataPath("snapshots", id, src.Block)
	if err != nil {
		return meta{}, err
	}
	if err := os.RemoveAll(to); err != nil {
		return meta{}, err
	}
	if err := copyData(from, to, src.Block); err != nil {
		return meta{}, err
	}
	m := meta{Capacity: src.Capacity, Block: src.Block, Source: volume, Created: time.Now()}
	return m, s.writeMeta("snapshots", id, m)
}

// snapshotMeta returns a snapshot's metadata, or os.ErrNotExist.
func (s *store) snapshotMeta(id string) (meta, error) {
	return s.readMeta("snapshots", id)
}

// snapshots lists every snapshot id.
func (s *store) snapshots() ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(s.root, "snapshots", "*.json"))
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(matches))
	for _, m := range matches {
		ids = append(ids, strings.TrimSuffix(filepath.Base(m), ".json"))
	}
	return ids, nil
}

// deleteSnapshot removes snapshot id; a missing one is not an error.
func (s *store) deleteSnapshot(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.readMeta("snapshots", id)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	data, _ := s.dataPath("snapshots", id, m.Block)
	if err := os.RemoveAll(data); err != nil {
		return err
	}
	metaPath, _ := s.path("snapshots", id, ".json")
	return os.Remove(metaPath)
}

// device returns the loop device of Block volume id, attaching its image
// first if it is not attached.
func (s *store) device(id string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.readMeta("volumes", id)
	if err != nil {
		return "", err
	}
	if !m.Block {
		return "", fmt.Errorf("volume %s is not a Block volume", id)
	}
	image, _ := s.dataPath("volumes", id, true)
	if m.Loop != "" && loopBacks(m.Loop, image) {
		return m.Loop, nil
	}
	out, err := exec.Command("losetup", "--find", "--show", image).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("losetup %s: %v: %s", image, err, strings.TrimSpace(string(out)))
	}
	m.Loop = strings.TrimSpace(string(out))
	return m.Loop, s.writeMeta("volumes", id, m)
}

// loopBacks tells whether loop device dev is attached to image.
func loopBacks(dev, image string) bool {
	out, err := exec.Command("losetup", "--noheadings", "--output", "BACK-FILE", dev).Output()
	return err == nil && strings.TrimSpace(string(out)) == image
}

func detachLoop(dev string) error {
	if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
		// Already detached (a restarted node) is fine.
		if !strings.Contains(string(out), "No such device") {
			return fmt.Errorf("losetup --detach %s: %v: %s", dev, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// copyData copies a volume's data: a directory tree with every attribute,
// or a sparse image that stays sparse.
func copyData(from, to string, block bool) error {
	var cmd *exec.Cmd
	if block {
		cmd = exec.Command("cp", "--sparse=always", from, to)
	} else {
		if err := os.Mkdir(to, 0o755); err != nil {
			return err
		}
		cmd = exec.Command("cp", "-a", "--", from+"/.", to)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("copying %s to %s: %v: %s", from, to, err, strings.TrimSpace(string(out)))
	}
	return nil
}
