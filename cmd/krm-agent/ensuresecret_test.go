package main

import (
	"io/fs"
	"strings"
	"testing"
)

func TestEnsureSecretFlags(t *testing.T) {
	noFile := func(string) ([]byte, error) { return nil, fs.ErrNotExist }
	podEnv := func(name string) string {
		if name == podNamespaceEnv {
			return "krm-system"
		}
		return ""
	}
	for _, tc := range []struct {
		name string
		args []string
		want string // error substring; "" for success
	}{
		{"redis", []string{"--name=krm-redis", "--data=password={password}", "--data=redis.conf=requirepass {password}"}, ""},
		{"no name", []string{"--data=password={password}"}, "--name is empty"},
		{"no data", []string{"--name=krm-redis"}, "--data: no keys"},
		{"nothing generated", []string{"--name=krm-redis", "--data=user=krm"}, "nothing to generate"},
		{"bad log format", []string{"--name=krm-redis", "--data=password={password}", "--log-format=xml"}, "--log-format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &EnsureSecretOptions{}
			if err := newEnsureSecretCommand(o).ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			s, err := o.spec(podEnv, noFile)
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			case tc.want == "" && s.Namespace != "krm-system":
				t.Errorf("namespace %q, want POD_NAMESPACE's krm-system", s.Namespace)
			}
		})
	}
}
