package secrets

import (
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func redisSpec() Spec {
	return Spec{Namespace: "krm-system", Name: "krm-redis", Templates: map[string]string{
		"password":   Placeholder,
		"redis.conf": "requirepass " + Placeholder,
	}}
}

func TestEnsureCreatesOnceAndKeeps(t *testing.T) {
	cs := fake.NewClientset()
	res, err := Ensure(t.Context(), cs, redisSpec())
	if err != nil || res != Created {
		t.Fatalf("first Ensure: %v %v, want created", res, err)
	}
	first, err := cs.CoreV1().Secrets("krm-system").Get(t.Context(), "krm-redis", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	password := string(first.Data["password"])
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`).MatchString(password) {
		t.Errorf("password %q: want 43 base64url characters", password)
	}
	if got := string(first.Data["redis.conf"]); got != "requirepass "+password {
		t.Errorf("redis.conf = %q, want requirepass and the password key's value", got)
	}
	if first.Labels["app.kubernetes.io/part-of"] != "krm" {
		t.Errorf("labels %v: want part-of krm", first.Labels)
	}

	res, err = Ensure(t.Context(), cs, redisSpec())
	if err != nil || res != Kept {
		t.Fatalf("second Ensure: %v %v, want kept", res, err)
	}
	second, err := cs.CoreV1().Secrets("krm-system").Get(t.Context(), "krm-redis", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(second.Data["password"]) != password {
		t.Error("a second Ensure changed the password")
	}
}

func TestEnsurePasswordsDiffer(t *testing.T) {
	a, _ := NewPassword()
	b, _ := NewPassword()
	if a == b || len(a) != 43 {
		t.Errorf("two passwords %q and %q: want different, 43 characters", a, b)
	}
}

// A replica that loses the race to create sees AlreadyExists and keeps
// the winner's Secret.
func TestEnsureLosingARace(t *testing.T) {
	winner := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "krm-redis", Namespace: "krm-system"},
		Data: map[string][]byte{"password": []byte("w"), "redis.conf": []byte("requirepass w")}}
	cs := fake.NewClientset(winner)
	res, err := Ensure(t.Context(), cs, redisSpec())
	if err != nil || res != Kept {
		t.Fatalf("Ensure: %v %v, want kept", res, err)
	}
	got, _ := cs.CoreV1().Secrets("krm-system").Get(t.Context(), "krm-redis", metav1.GetOptions{})
	if string(got.Data["password"]) != "w" {
		t.Error("the winner's password was replaced")
	}
}

func TestEnsureExistingWithoutAKey(t *testing.T) {
	mine := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "krm-redis", Namespace: "krm-system"},
		Data: map[string][]byte{"password": []byte("mine")}}
	cs := fake.NewClientset(mine)
	_, err := Ensure(t.Context(), cs, redisSpec())
	if err == nil || !strings.Contains(err.Error(), "without the keys redis.conf") || !strings.Contains(err.Error(), "delete the secret") {
		t.Fatalf("got %v, want an error naming redis.conf and the fix", err)
	}
	got, _ := cs.CoreV1().Secrets("krm-system").Get(t.Context(), "krm-redis", metav1.GetOptions{})
	if string(got.Data["password"]) != "mine" || len(got.Data) != 1 {
		t.Error("a Secret missing a key was changed")
	}
}

func TestEnsureForbidden(t *testing.T) {
	for verb, want := range map[string]string{"create": "create on secrets", "get": "get on secrets named krm-redis"} {
		t.Run(verb, func(t *testing.T) {
			cs := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "krm-redis", Namespace: "krm-system"}})
			cs.PrependReactor(verb, "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "krm-redis", nil)
			})
			if _, err := Ensure(t.Context(), cs, redisSpec()); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("got %v, want an error naming %q", err, want)
			}
		})
	}
}

func TestParseDataAndValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spec  Spec
		pairs []string
		want  string
	}{
		{name: "good", pairs: []string{"user=krm", "token=krm:" + Placeholder}},
		{name: "no pairs", pairs: nil, want: "no keys"},
		{name: "no equals", pairs: []string{"password"}, want: "KEY=TEMPLATE"},
		{name: "twice", pairs: []string{"a=" + Placeholder, "a=b"}, want: "twice"},
		{name: "nothing generated", pairs: []string{"user=krm"}, want: "nothing to generate"},
		{name: "bad key", pairs: []string{"a b=" + Placeholder}, want: `key "a b"`},
		{name: "empty template", pairs: []string{"a=" + Placeholder, "b="}, want: "empty"},
		{name: "long template", pairs: []string{"a=" + Placeholder + strings.Repeat("x", MaxTemplateLen)}, want: "at most 1024"},
		{name: "too many", pairs: strings.Split(strings.Repeat("k="+Placeholder+",", MaxKeys+1), ",")[:MaxKeys+1], want: "at most 16"},
		{name: "bad name", spec: Spec{Name: "Krm_Redis", Namespace: "krm-system"}, pairs: []string{"a=" + Placeholder}, want: "secret name"},
		{name: "bad namespace", spec: Spec{Name: "krm-redis", Namespace: ""}, pairs: []string{"a=" + Placeholder}, want: "namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.spec
			if s.Name == "" && s.Namespace == "" {
				s = Spec{Name: "krm-influxdb", Namespace: "krm-system"}
			}
			var err error
			s.Templates, err = ParseData(tc.pairs)
			if err == nil {
				err = s.Validate()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("%v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}
