package compress

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/seedlm/seedlm/internal/archive"
	"github.com/seedlm/seedlm/internal/checkpoint"
)

// Sidecar is a small file of a model folder that compress stores byte for
// byte beside the weights (config.json, the tokenizer files, ...), so
// decompress gives back a folder transformers can load.
type Sidecar struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// SidecarPatterns are the files of a model folder compress stores (matched
// against the lower-case name): what transformers reads besides the
// weights, and the model card and license that travel with them.
var SidecarPatterns = []string{
	"config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
	"tokenizer*.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
	"vocab.json", "vocab.txt", "merges.txt", "spiece.model",
	"chat_template.json", "*.jinja",
	"readme", "readme.*", "license", "license.*", "licence", "licence.*", "notice", "notice.*", "use_policy.*",
}

// MaxSidecarBytes is the largest sidecar file compress stores (the largest
// tokenizer.json files are some tens of MB).
var MaxSidecarBytes int64 = 64 << 20 // a var so tests can lower it

func isSidecar(name string) bool {
	low := strings.ToLower(name)
	for _, p := range SidecarPatterns {
		if ok, _ := path.Match(p, low); ok {
			return true
		}
	}
	return false
}

// scanSidecars lists the sidecar files of a model folder, in name order,
// and the entries it leaves out with the reason ("name: reason"). used are
// the weights files the source reads (shards and index): neither.
func scanSidecars(dir string, used []string) ([]Sidecar, []string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	var out []Sidecar
	var skipped []string
	for _, e := range ents {
		name := e.Name()
		if slices.Contains(used, name) {
			continue
		}
		st, err := os.Stat(filepath.Join(dir, name)) // follows links (a Hugging Face cache snapshot is links)
		switch {
		case err != nil:
			skipped = append(skipped, fmt.Sprintf("%s: %v", name, err))
		case st.IsDir():
			skipped = append(skipped, name+"/: a folder")
		case !st.Mode().IsRegular():
			skipped = append(skipped, name+": not a regular file")
		case strings.HasPrefix(name, "."):
			skipped = append(skipped, name+": a hidden file")
		case !isSidecar(name):
			skipped = append(skipped, name+": not a model sidecar (configs, tokenizer files, chat templates, README, LICENSE)")
		case st.Size() > MaxSidecarBytes:
			skipped = append(skipped, fmt.Sprintf("%s: %d bytes, over the %d-byte limit for a sidecar", name, st.Size(), MaxSidecarBytes))
		default:
			sum, err := fileSHA256(filepath.Join(dir, name))
			if err != nil {
				return nil, nil, err
			}
			out = append(out, Sidecar{Name: name, Size: st.Size(), SHA256: sum})
		}
	}
	slices.SortFunc(out, func(a, b Sidecar) int { return strings.Compare(a.Name, b.Name) })
	return out, skipped, nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readSidecars reads the plan's sidecar files from src's folder, checking
// each against the plan's size and hash.
func (p *Plan) readSidecars(src checkpoint.Source, planPath string) ([]archive.FileData, error) {
	if len(p.Sidecars) == 0 {
		return nil, nil
	}
	dir := checkpoint.Folder(src)
	if dir == "" {
		return nil, &MismatchError{Plan: planPath, Diffs: []string{fmt.Sprintf("the plan stores %d sidecar file(s) of a model folder, but the input %s is not a folder", len(p.Sidecars), src.Path())}}
	}
	var out []archive.FileData
	for _, s := range p.Sidecars {
		b, err := os.ReadFile(filepath.Join(dir, s.Name))
		if err != nil {
			return nil, err
		}
		if got := sha256Hex(b); int64(len(b)) != s.Size || got != s.SHA256 {
			return nil, &MismatchError{Plan: planPath, Diffs: []string{fmt.Sprintf("sidecar %s is %d bytes with SHA-256 %s, the plan's %d bytes with %s (it changed since planning)",
				s.Name, len(b), short(got), s.Size, short(s.SHA256))}}
		}
		out = append(out, archive.FileData{Name: s.Name, Data: b})
	}
	return out, nil
}
