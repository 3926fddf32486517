package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

func (s *Server) getNamespaced(w http.ResponseWriter, r *http.Request) {
	res, ok := s.resource(w, r)
	if !ok {
		return
	}
	info := res.Info()
	if !info.Namespaced {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s are cluster-scoped, so they have no namespace: get one with /api/%s/resources/%s/%s", info.Name, Version, info.Name, r.PathValue("name")))
		return
	}
	s.get(w, r, res, info, r.PathValue("namespace"), r.PathValue("name"))
}

func (s *Server) getClusterScoped(w http.ResponseWriter, r *http.Request) {
	res, ok := s.resource(w, r)
	if !ok {
		return
	}
	info := res.Info()
	if info.Namespaced {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%s are namespaced: get one with /api/%s/resources/%s/namespaces/{namespace}/%s", info.Name, Version, info.Name, r.PathValue("name")))
		return
	}
	s.get(w, r, res, info, "", r.PathValue("name"))
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, res Resource, info ResourceInfo, namespace, name string) {
	q, err := parseGetQuery(r.URL.Query(), info)
	if err != nil {
		writeErr(w, err)
		return
	}
	snap := res.Snapshot(q.view)
	s.setFreshness(w, snap)
	if err := s.checkStaleness(info, snap, q.maxStaleness); err != nil {
		writeErr(w, err)
		return
	}
	row := findRow(snap.Rows, namespace, name)
	if row == nil {
		msg := fmt.Sprintf("%s %q not found", info.Name, name)
		if namespace != "" {
			msg += fmt.Sprintf(" in namespace %q", namespace)
		}
		writeError(w, http.StatusNotFound, msg)
		return
	}

	obj := bytes.TrimRight(row.Object, " \t\r\n")
	if len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}' {
		s.log.Error("stored object is not a JSON object", "resource", info.Name, "namespace", namespace, "name", name)
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("the stored copy of %s %q is not a JSON object", info.Name, row.Key()))
		return
	}
	meta, _ := json.Marshal(frameHeader(info, snap, q.view, 1))

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := getWriter(w)
	defer putWriter(bw)
	// "krm" goes in as the last member, so the body still decodes as the
	// Kubernetes object and the object's own bytes are not re-encoded.
	body := bytes.TrimRight(obj[:len(obj)-1], " \t\r\n")
	_, _ = bw.Write(body)
	if body[len(body)-1] != '{' {
		_ = bw.WriteByte(',')
	}
	_, _ = bw.WriteString(`"krm":{"header":`)
	_, _ = bw.Write(meta)
	_, _ = bw.WriteString(`,"row":`)
	_, _ = bw.Write(appendRowMeta(bw.AvailableBuffer(), row))
	_, _ = bw.WriteString("}}\n")
	if err := bw.Flush(); err != nil {
		s.log.Debug("writing object", "resource", info.Name, "err", err)
	}
}

// DecodeObject splits a single-object answer into the Kubernetes object,
// without its "krm" member, and krm's metadata. The object's other bytes are
// kept as they are.
func DecodeObject(data []byte) (json.RawMessage, ObjectMeta, error) {
	var meta ObjectMeta
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, meta, errors.New("decoding object: the answer is not a JSON object")
	}
	first := true
	for dec.More() {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil, meta, fmt.Errorf("decoding object: %w", err)
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, meta, fmt.Errorf("decoding object: %w", err)
		}
		if key, _ := tok.(string); key != "krm" {
			first = false
			continue
		}
		if err := json.Unmarshal(value, &meta); err != nil {
			return nil, meta, fmt.Errorf("decoding object's krm metadata: %w", err)
		}
		end := dec.InputOffset()
		rest := data[end:]
		if first {
			// The member had no comma before it; drop the one after it.
			trimmed := bytes.TrimLeft(rest, " \t\r\n")
			if len(trimmed) > 0 && trimmed[0] == ',' {
				rest = trimmed[1:]
			}
		}
		out := make([]byte, 0, len(data)-int(end-start))
		out = append(out, data[:start]...)
		out = append(out, rest...)
		return bytes.TrimRight(out, " \t\r\n"), meta, nil
	}
	if _, err := dec.Token(); err != nil && !errors.Is(err, io.EOF) {
		return nil, meta, fmt.Errorf("decoding object: %w", err)
	}
	return bytes.TrimRight(data, " \t\r\n"), meta, nil
}
