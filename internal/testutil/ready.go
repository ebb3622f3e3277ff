package testutil

import (
	"io"
	"net/http"
	"time"
)

// Ready is a sidecar admin server's /ready answer: status and body.
func Ready(admin string) (int, string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + admin + "/ready")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}
