package iotsim_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"gatewayd/internal/iotsim"
	"gatewayd/uplink"
)

const (
	pk, dn, secret = "pk1", "dev1", "sec1"
)

func start(t *testing.T) *iotsim.Server {
	t.Helper()
	s, err := iotsim.Start(iotsim.Options{TCPAddr: "127.0.0.1:0",
		Devices: []iotsim.Device{{ProductKey: pk, DeviceName: dn, DeviceSecret: secret}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func wait(t *testing.T, tok mqtt.Token) error {
	t.Helper()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-time.After(5 * time.Second):
		t.Fatal("token timed out")
		return nil
	}
}

// dial connects a plain paho client signed with the given secret and
// client id parameters.
func dial(t *testing.T, s *iotsim.Server, sec, method string, keepalive time.Duration) (mqtt.Client, *mqtt.ConnectToken, error) {
	t.Helper()
	pw, err := uplink.Sign(method, pk, dn, sec, "c1", "123")
	if err != nil {
		t.Fatal(err)
	}
	o := mqtt.NewClientOptions().AddBroker("tcp://" + s.TCPAddr()).
		SetClientID(uplink.ClientIDField("c1", false, method, "123")).
		SetUsername(dn + "&" + pk).SetPassword(pw).SetKeepAlive(keepalive).SetAutoReconnect(false).SetCleanSession(false).SetProtocolVersion(4)
	cl := mqtt.NewClient(o)
	tok := cl.Connect()
	err = wait(t, tok)
	t.Cleanup(func() { cl.Disconnect(0) })
	return cl, tok.(*mqtt.ConnectToken), err
}

func TestConnectChecks(t *testing.T) {
	s := start(t)
	for _, m := range []string{"hmacsha256", "hmacsha1", "hmacmd5"} {
		if _, _, err := dial(t, s, secret, m, 60*time.Second); err != nil {
			t.Errorf("%s: valid login refused: %v", m, err)
		}
	}
	_, tok, err := dial(t, s, "wrong", "hmacsha256", 60*time.Second)
	if err == nil || tok.ReturnCode() != 4 {
		t.Errorf("wrong secret: err %v, return code %d; want 4", err, tok.ReturnCode())
	}
	_, tok, err = dial(t, s, secret, "hmacsha256", 10*time.Second)
	if err == nil || tok.ReturnCode() != 2 {
		t.Errorf("keepalive 10s: err %v, code %d; want refusal", err, tok.ReturnCode())
	}
	s.SetOutage(true)
	_, tok, err = dial(t, s, secret, "hmacsha256", 60*time.Second)
	if err == nil || tok.ReturnCode() != 3 {
		t.Errorf("outage: err %v, code %d; want 3", err, tok.ReturnCode())
	}
	var codes []byte
	for _, c := range s.Connects() {
		codes = append(codes, c.Code)
	}
	if string(codes) != string([]byte{0, 0, 0, 4, 2, 3}) {
		t.Errorf("recorded codes %v", codes)
	}
}

func TestPostReplies(t *testing.T) {
	s := start(t)
	cl, _, err := dial(t, s, secret, "hmacsha256", 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	replies := make(chan map[string]any, 10)
	base := "/sys/" + pk + "/" + dn + "/thing/event/property/"
	if err := wait(t, cl.Subscribe(base+"post_reply", 1, func(_ mqtt.Client, m mqtt.Message) {
		var r map[string]any
		json.Unmarshal(m.Payload(), &r)
		replies <- r
	})); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	for _, tc := range []struct {
		body string
		code float64
	}{
		{`{"id":"1","version":"1.0","params":{"t":{"value":20.5,"time":` + itoa(now) + `}},"method":"thing.event.property.post"}`, 200},
		{`{"id":"2","version":"1.0","params":{"t":{"value":20,"time":` + itoa(now) + `}},"method":"thing.event.property.post"}`, 460},
		{`{"id":"3","version":"1.0","params":{"t":{"value":20.5,"time":` + itoa(now-25*3600*1000) + `}},"method":"thing.event.property.post"}`, 460},
		{`{"id":"4","version":"1.0","params":{"t":{"value":20.5,"time":` + itoa(now) + `}},"method":"thing.event.property.batch.post"}`, 460},
	} {
		if err := wait(t, cl.Publish(base+"post", 1, false, tc.body)); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-replies:
			if r["code"] != tc.code {
				t.Errorf("%s: reply %v, want code %v", tc.body, r, tc.code)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no reply", tc.body)
		}
	}
	if acc := s.Accepted(); len(acc) != 1 || acc[0].Value != 20.5 || acc[0].MsgID != "1" {
		t.Fatalf("accepted %+v", acc)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestOversizedPostDroppedSilently(t *testing.T) {
	s := start(t)
	cl, _, err := dial(t, s, secret, "hmacsha256", 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	replies := make(chan []byte, 1)
	base := "/sys/" + pk + "/" + dn + "/thing/event/property/"
	if err := wait(t, cl.Subscribe(base+"post_reply", 1, func(_ mqtt.Client, m mqtt.Message) { replies <- m.Payload() })); err != nil {
		t.Fatal(err)
	}
	big := `{"id":"7","version":"1.0","params":{"t":{"value":1.5,"time":` + itoa(time.Now().UnixMilli()) + `}},"method":"thing.event.property.post","pad":"` + strings.Repeat("x", 300<<10) + `"}`
	if err := wait(t, cl.Publish(base+"post", 1, false, big)); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-replies:
		t.Fatalf("oversized post answered: %s", r)
	case <-time.After(300 * time.Millisecond):
	}
	if m := s.Messages(); len(m) != 1 || m[0].Code != -1 || len(s.Accepted()) != 0 {
		t.Fatalf("messages %+v", m)
	}
}

func TestSecondLoginKicksTheFirst(t *testing.T) {
	s := start(t)
	first, _, err := dial(t, s, secret, "hmacsha256", 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := uplink.Sign("hmacsha256", pk, dn, secret, "", "")
	o := mqtt.NewClientOptions().AddBroker("tcp://" + s.TCPAddr()).SetClientID("other|securemode=3,signmethod=hmacsha256|").
		SetUsername(dn + "&" + pk).SetPassword(pw).SetKeepAlive(60 * time.Second).SetAutoReconnect(false).SetProtocolVersion(4)
	second := mqtt.NewClient(o)
	if err := wait(t, second.Connect()); err != nil {
		t.Fatal(err)
	}
	defer second.Disconnect(0)
	deadline := time.Now().Add(3 * time.Second)
	for first.IsConnectionOpen() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if first.IsConnectionOpen() || !second.IsConnectionOpen() {
		t.Fatalf("first open=%v second open=%v", first.IsConnectionOpen(), second.IsConnectionOpen())
	}
}

// RateWindow counts everything a device publishes in any sliding second,
// at arrival, and answers the posts beyond it with 429.
func TestRateWindow(t *testing.T) {
	s, err := iotsim.Start(iotsim.Options{TCPAddr: "127.0.0.1:0", RateWindow: 3,
		Devices: []iotsim.Device{{ProductKey: pk, DeviceName: dn, DeviceSecret: secret}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cl, _, err := dial(t, s, secret, "hmacsha256", 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	base := "/sys/" + pk + "/" + dn + "/thing/event/property/"
	post := func(id int) {
		body := `{"id":"` + itoa(int64(id)) + `","version":"1.0","params":{"t":{"value":20.5,"time":` + itoa(time.Now().UnixMilli()) + `}},"method":"thing.event.property.post"}`
		if err := wait(t, cl.Publish(base+"post", 1, false, body)); err != nil {
			t.Fatal(err)
		}
	}
	// An NTP request counts as much as a post.
	if err := wait(t, cl.Publish("/ext/ntp/"+pk+"/"+dn+"/request", 1, false, `{"deviceSendTime":"1"}`)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		post(i)
	}
	if !waitCond(func() bool { return len(s.Messages()) == 4 }) {
		t.Fatalf("messages %+v", s.Messages())
	}
	var codes []int
	for _, m := range s.Messages() {
		codes = append(codes, m.Code)
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 || codes[3] != 429 {
		t.Fatalf("codes %v: want 200 200 429 429 (the NTP request was the first of 3)", codes)
	}
	time.Sleep(1100 * time.Millisecond)
	post(5)
	if !waitCond(func() bool { return len(s.Messages()) == 5 }) || s.Messages()[4].Code != 200 {
		t.Fatalf("a second later: %+v", s.Messages())
	}
	c := s.Counts()
	if c.Publishes != 6 || c.Posts != 5 || c.Throttled != 2 || c.OverWindow != 2 || c.PeakWindow != 5 || c.Values != 3 {
		t.Fatalf("counts %+v", c)
	}
}

// A batch post carrying several sensors' samples (one property name,
// several times) is counted per value and per stamp, and printed one line
// per value, oldest first.
func TestBatchOfSeveralSensors(t *testing.T) {
	var out syncBuf
	s, err := iotsim.Start(iotsim.Options{TCPAddr: "127.0.0.1:0", Out: &out,
		Devices: []iotsim.Device{{ProductKey: pk, DeviceName: dn, DeviceSecret: secret}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cl, _, err := dial(t, s, secret, "hmacsha256", 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	t1, t2 := itoa(now-5), itoa(now-3)
	body := `{"id":"9","version":"1.0","params":{"properties":{` +
		`"temperature":[{"value":21.5,"time":` + t1 + `},{"value":22.25,"time":` + t2 + `}],` +
		`"humidity":[{"value":40.0,"time":` + t1 + `},{"value":41.5,"time":` + t2 + `}]},"events":{}},"method":"thing.event.property.batch.post"}`
	if err := wait(t, cl.Publish("/sys/"+pk+"/"+dn+"/thing/event/property/batch/post", 1, false, body)); err != nil {
		t.Fatal(err)
	}
	if !waitCond(func() bool { return len(s.Messages()) == 1 }) {
		t.Fatal("no message")
	}
	m := s.Messages()[0]
	if m.Code != 200 || m.Values != 4 || m.Samples != 2 || len(s.Accepted()) != 4 {
		t.Fatalf("message %+v, accepted %d", m, len(s.Accepted()))
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")[1:] // after "connected"
	if len(lines) != 4 || !strings.Contains(lines[0], " humidity=40.0 ") || !strings.Contains(lines[1], " temperature=21.5 ") || !strings.Contains(lines[3], " temperature=22.25 ") {
		t.Fatalf("output:\n%s", out.String())
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func waitCond(cond func() bool) bool {
	for i := 0; i < 500; i++ {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}
