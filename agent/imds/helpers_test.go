package imds_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

func newServer(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func itoa(n int) string { return strconv.Itoa(n) }
