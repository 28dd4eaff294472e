package plan

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestHashReadsBackAsTheWireSpellsIt(t *testing.T) {
	h := HashOf([]byte("content"))
	s := h.String()
	if len(s) != 64 || strings.ToLower(s) != s {
		t.Fatalf("String() = %q", s)
	}
	if got, err := ParseHash(s); err != nil || got != h {
		t.Fatalf("ParseHash(%q) = %v, %v", s, got, err)
	}
	if got, err := ParseHash(""); err != nil || !got.IsZero() || got.String() != "" {
		t.Fatalf(`ParseHash("") = %v, %v; want no hash`, got, err)
	}
	b, err := json.Marshal(struct{ H Hash }{h})
	if err != nil || string(b) != `{"H":"`+s+`"}` {
		t.Fatalf("JSON: %s, %v", b, err)
	}
	var back struct{ H Hash }
	if err := json.Unmarshal(b, &back); err != nil || back.H != h {
		t.Fatalf("JSON back: %v, %v", back.H, err)
	}
}

func TestParseHashRefusesWhatTheServerWouldNotName(t *testing.T) {
	s := HashOf([]byte("x")).String()
	for _, bad := range []string{"aa", s[:63], s + "0", strings.ToUpper(s), s[:63] + "g", " " + s[1:]} {
		if _, err := ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q): no error", bad)
		}
	}
	var h Hash
	if err := json.Unmarshal([]byte(`"zz"`), &h); err == nil || !h.IsZero() {
		t.Errorf("JSON of a bad hash: %v, left %v", err, h)
	}
}
