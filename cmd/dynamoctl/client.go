// client.go: dynamoctl's bounded HTTP reads of a node's admin endpoint.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// maxBody bounds an endpoint's answer. The largest, /ring and /members of
// the biggest ring (a few thousand nodes with IDs of up to 128 bytes), fit
// with room to spare.
const maxBody = 8 << 20

// client fetches a node's admin endpoints.
type client struct {
	ctx  context.Context
	base string // ends in "/"
	http *http.Client
}

// get fetches path and returns its body, at most maxBody bytes.
func (c *client) get(path string) ([]byte, error) {
	u := c.base + path
	req, err := http.NewRequestWithContext(c.ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", u, err)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", u, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", u, err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("%s: answer exceeds %d bytes", u, maxBody)
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", u, res.Status, bytes.TrimSpace(body[:min(len(body), 200)]))
	}
	return body, nil
}

// getJSON fetches path and decodes it into v.
func (c *client) getJSON(path string, v any) error {
	body, err := c.get(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s%s: not the JSON expected: %w", c.base, path, err)
	}
	return nil
}

// printJSON copies path's JSON to w once it parses, and asks problem (when
// set) whether it reports one.
func (c *client) printJSON(w io.Writer, path string, problem func([]byte) (bool, error)) (bool, error) {
	body, err := c.get(path)
	if err != nil {
		return false, err
	}
	if !json.Valid(body) {
		return false, fmt.Errorf("%s%s: not JSON", c.base, path)
	}
	var p bool
	if problem != nil {
		if p, err = problem(body); err != nil {
			return false, fmt.Errorf("%s%s: not the JSON expected: %w", c.base, path, err)
		}
	}
	if _, err := w.Write(body); err != nil {
		return false, err
	}
	return p, nil
}
