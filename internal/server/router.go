package server

import (
	"fmt"
	"strings"

	"github.com/cvault/cvault/internal/route"
)

// router matches paths against route patterns with a segment trie.
// Literal segments match case-insensitively (ARM paths are
// case-insensitive; clients send "resourcegroups" and "resourceGroups"),
// wildcards capture the segment as sent, and literals win over wildcards.
type router struct {
	root *node
}

type node struct {
	lits     map[string]*node // lower-cased literal → child
	wild     *node
	wildName string
	methods  map[string]*entry // at the end of a pattern
}

type entry struct {
	route route.Route
	names []string // wildcard names in order
}

func newRouter() *router { return &router{root: &node{}} }

func split(path string) []string {
	path = strings.TrimPrefix(path, "/")
	if path == "" {
		return nil
	}
	return strings.Split(path, "/")
}

func (rt *router) add(r route.Route) error {
	n := rt.root
	var names []string
	for _, seg := range split(r.Pattern) {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			name := seg[1 : len(seg)-1]
			if n.wild == nil {
				n.wild = &node{}
				n.wildName = name
			}
			names = append(names, name)
			n = n.wild
			continue
		}
		if n.lits == nil {
			n.lits = map[string]*node{}
		}
		k := strings.ToLower(seg)
		child := n.lits[k]
		if child == nil {
			child = &node{}
			n.lits[k] = child
		}
		n = child
	}
	if n.methods == nil {
		n.methods = map[string]*entry{}
	}
	if _, dup := n.methods[r.Method]; dup {
		return fmt.Errorf("server: duplicate route %s", r.Name())
	}
	n.methods[r.Method] = &entry{route: r, names: names}
	return nil
}

// match finds the node for path; values are the wildcard captures.
// A trailing empty segment ("/keys/k/") may bind the last wildcard to "";
// otherwise it is ignored.
func (rt *router) match(path string) (*node, []string) {
	segs := split(path)
	if n, vals := walk(rt.root, segs, nil); n != nil {
		return n, vals
	}
	if len(segs) > 0 && segs[len(segs)-1] == "" {
		return walk(rt.root, segs[:len(segs)-1], nil)
	}
	return nil, nil
}

func walk(n *node, segs []string, vals []string) (*node, []string) {
	if len(segs) == 0 {
		if n.methods != nil {
			return n, vals
		}
		return nil, nil
	}
	seg := segs[0]
	if child := n.lits[strings.ToLower(seg)]; child != nil && seg != "" {
		if m, v := walk(child, segs[1:], vals); m != nil {
			return m, v
		}
	}
	if n.wild != nil && (seg != "" || len(segs) == 1) {
		if m, v := walk(n.wild, segs[1:], append(vals, seg)); m != nil {
			return m, v
		}
	}
	return nil, nil
}

// allowed lists the methods a matched node serves (for 405).
func (n *node) allowed() string {
	ms := make([]string, 0, len(n.methods))
	for m := range n.methods {
		ms = append(ms, m)
	}
	return strings.Join(ms, ", ")
}
