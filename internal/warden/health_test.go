package warden

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestCheckers(t *testing.T) {
	// A line server: answers "+PONG\r\n" to "PING\r\n", "-ERR\r\n" otherwise.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				buf := make([]byte, 6)
				n, _ := c.Read(buf)
				if string(buf[:n]) == "PING\r\n" {
					c.Write([]byte("+PONG\r\n"))
				} else {
					c.Write([]byte("-ERR\r\n"))
				}
			}(c)
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
		case "/slow":
			time.Sleep(time.Second)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer web.Close()

	for _, tt := range []struct {
		name, yaml string
		wantErr    string // "" for healthy
	}{
		{"tcp connect", `{type: tcp, target: "` + l.Addr().String() + `"}`, ""},
		{"tcp refused", `{type: tcp, target: "` + closedAddr + `"}`, "refused"},
		{"tcp expect", `{type: tcp, target: "` + l.Addr().String() + `", send: "PING\r\n", expect: "+PONG"}`, ""},
		{"tcp wrong reply", `{type: tcp, target: "` + l.Addr().String() + `", send: "PONG\r\n", expect: "+PONG"}`, `answered "-ERR\r", want "+PONG"`},
		{"http 2xx", `{type: http, target: "` + web.URL + `/ok"}`, ""},
		{"http 503", `{type: http, target: "` + web.URL + `/bad"}`, "503 Service Unavailable"},
		{"http timeout", `{type: http, target: "` + web.URL + `/slow", timeout: 100ms}`, "deadline exceeded"},
		{"command ok", `{command: ["/bin/true"]}`, ""},
		{"command fails", `{command: ["/bin/sh", "-c", "echo sick; exit 2"]}`, "exit status 2: sick"},
		{"command timeout", `{command: ["/bin/sleep", "10"], timeout: 100ms}`, "killed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := testService(t, `services: [{name: a, command: x, health: `+tt.yaml+`}]`)
			check := checkerFor(s)
			ctx, cancel := context.WithTimeout(context.Background(), s.Health.Timeout.D)
			defer cancel()
			err := check(ctx)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("unhealthy: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	if checkerFor(testService(t, `services: [{name: a, command: x}]`)) != nil {
		t.Errorf("a service without a check has a checker")
	}
}
