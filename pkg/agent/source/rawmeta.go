package source

import (
	"encoding/json"
	"errors"
)

// RawMeta reads an object's metadata.uid and metadata.resourceVersion from
// its JSON without decoding the rest: a verifying LIST compares every
// object it receives with the row it holds, and for most objects that is
// all it needs. It walks the top-level object's keys, skipping values,
// and stops after metadata, which kube-apiserver writes right after kind
// and apiVersion. Input it cannot follow is handed to encoding/json. The
// one difference from encoding/json: a second top-level "metadata" key is
// not read (kube-apiserver writes none). obj must be valid JSON, as a
// json.Decoder has checked it to be.
func RawMeta(obj []byte) (uid, rv string, err error) {
	s := scanner{b: obj}
	if uid, rv, ok := s.meta(); ok {
		return uid, rv, nil
	}
	var m struct {
		Metadata *struct {
			UID             string `json:"uid"`
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(obj, &m); err != nil {
		return "", "", err
	}
	if m.Metadata == nil {
		return "", "", errors.New("the object has no metadata")
	}
	return m.Metadata.UID, m.Metadata.ResourceVersion, nil
}

// scanner is just enough of a JSON reader for RawMeta: it gives up (ok
// false) on anything unusual, escapes in the strings it reads included.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next consumes c after any space.
func (s *scanner) next(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string without escapes.
func (s *scanner) str() (string, bool) {
	if !s.next('"') {
		return "", false
	}
	start := s.i
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return string(s.b[start : s.i-1]), true
		case c == '\\' || c < 0x20:
			return "", false
		}
		s.i++
	}
	return "", false
}

// skip passes over one value of any kind; it checks only what it must to
// find the value's end.
func (s *scanner) skip() bool {
	s.space()
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		s.i++
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '\\':
				s.i += 2
				continue
			case '"':
				s.i++
				return true
			}
			s.i++
		}
		return false
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if !s.skip() {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
		return false
	default:
		// A number, true, false or null: up to the next delimiter.
		start := s.i
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return s.i > start
			}
			s.i++
		}
		return s.i > start
	}
}

// object calls fn with each key of the object at the cursor, fn consuming
// the value; fn returning done stops early.
func (s *scanner) object(fn func(key string) (done, ok bool)) bool {
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return true
	}
	for {
		key, ok := s.str()
		if !ok || !s.next(':') {
			return false
		}
		done, ok := fn(key)
		if !ok {
			return false
		}
		if done {
			return true
		}
		if s.next(',') {
			continue
		}
		return s.next('}')
	}
}

func (s *scanner) meta() (uid, rv string, ok bool) {
	found := false
	ok = s.object(func(key string) (bool, bool) {
		if key != "metadata" {
			return false, s.skip()
		}
		var haveUID, haveRV bool
		ok := s.object(func(key string) (bool, bool) {
			var ok bool
			switch key {
			case "uid":
				uid, ok = s.str()
				haveUID = true
			case "resourceVersion":
				rv, ok = s.str()
				haveRV = true
			default:
				ok = s.skip()
			}
			// Read on to the end: with a key given twice, the last
			// counts, as in encoding/json.
			return false, ok
		})
		found = ok && haveUID && haveRV
		// Without both, let encoding/json decide.
		return true, found
	})
	return uid, rv, ok && found
}
