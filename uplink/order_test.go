package uplink_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"gatewayd/internal/testutil"
	"gatewayd/uplink"
)

// Inbound messages are handled in the order the broker delivered them: a
// burst of control commands is answered in order (with paho's default
// out-of-order delivery each message ran on its own goroutine and raced).
func TestInboundInOrder(t *testing.T) {
	m := testutil.StartMosquitto(t, testutil.MosquittoOpts{})
	log, _ := newLogger(t)
	c := newClient(t, uplink.Options{Platform: "mqtt", Broker: "tcp://" + m.Addr, DeviceName: dn, Logger: log,
		MaxMessagesPerSecond: 1000, BackoffMin: 50 * time.Millisecond, BackoffMax: 300 * time.Millisecond}, testutil.NewMemSource())
	run(t, c)
	if !testutil.Eventually(5*time.Second, func() bool { return c.Stats().Connected }) {
		t.Fatalf("not connected: %+v", c.Stats())
	}
	control := "gatewayd/" + dn + "/control"
	var ids []int
	sub := subscribe(t, "tcp://"+m.Addr, nil, control+"/reply", nil)
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + m.Addr).SetClientID("test-pub").SetAutoReconnect(false))
	waitToken(t, pub.Connect())
	defer pub.Disconnect(100)
	const rounds, burst = 4, 8 // the downlink worker queues 8
	for r := 0; r < rounds; r++ {
		var toks []mqtt.Token
		for i := 0; i < burst; i++ {
			toks = append(toks, pub.Publish(control, 1, false, fmt.Sprintf(`{"id":"%d","cmd":"status"}`, r*burst+i)))
		}
		for _, tok := range toks {
			waitToken(t, tok)
		}
		want := (r + 1) * burst
		if !testutil.Eventually(5*time.Second, func() bool { return len(sub.messages()) >= want }) {
			t.Fatalf("round %d: %d replies of %d; stats %+v", r, len(sub.messages()), want, c.Stats())
		}
	}
	for _, msg := range sub.messages() {
		var rep struct {
			ID   string
			Code int
		}
		if err := json.Unmarshal(msg.Payload(), &rep); err != nil || rep.Code != 200 {
			t.Fatalf("reply %s: %v", msg.Payload(), err)
		}
		n, _ := strconv.Atoi(rep.ID)
		ids = append(ids, n)
	}
	for i, id := range ids {
		if id != i {
			t.Fatalf("replies out of order: %v", ids)
		}
	}
}
